use crate::Shape;

/// Everything that can go wrong at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The batch given to `forward` does not hold images of the network's input shape.
    #[error(
        "input shape mismatch: expected a batch of {expected} images, (N, H, W, C) in NHWC, found an array of shape {found:?}"
    )]
    InputShape {
        /// The shape of one image the network takes.
        expected: Shape,
        /// The dimensions of the array that was given.
        found: Vec<usize>,
    },
}
