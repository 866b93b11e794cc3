use std::path::PathBuf;

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
    /// A tensor given to a layer's `set_*` has another shape than the layer's.
    #[error("cannot set the {tensor}: expected shape {expected:?}, found {found:?}")]
    ParameterShape { tensor: &'static str, expected: Vec<usize>, found: Vec<usize> },
    /// `set_bias` on a layer made without a bias (`nobias`).
    #[error("this {layer} has no bias (`nobias`): there is none to set")]
    NoBias { layer: &'static str },
    /// A layer used on its own got a batch of another shape.
    #[error(
        "{layer} input shape mismatch: expected a batch of {expected:?}, found an array of shape {found:?}"
    )]
    LayerInput { layer: &'static str, expected: Vec<usize>, found: Vec<usize> },
    /// A weights file could not be read or written.
    #[error("cannot access weights file {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A weights file is empty.
    #[error("weights file {} is empty", path.display())]
    EmptyFile { path: PathBuf },
    /// A weights file ends before its header says it does.
    #[error("weights file {} is truncated: {reason}", path.display())]
    TruncatedFile { path: PathBuf, reason: String },
    /// A weights file is not safetensors.
    #[error("weights file {} is not a valid safetensors file: {reason}", path.display())]
    CorruptFile { path: PathBuf, reason: String },
    /// A tensor the network needs is not in the file.
    #[error("weights file {} has no tensor `{name}` (expected shape {expected:?})", path.display())]
    MissingTensor { path: PathBuf, name: String, expected: Vec<usize> },
    /// The file has a tensor the network does not.
    #[error("weights file {} has a tensor `{name}` that the network does not have", path.display())]
    UnexpectedTensor { path: PathBuf, name: String },
    /// A tensor has another shape than the layer (in the file's layout).
    #[error("tensor `{name}` in {} has shape {found:?}, but the network expects {expected:?}", path.display())]
    TensorShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },
    /// A tensor is not F32, F64, F16 or BF16.
    #[error("tensor `{name}` in {} is {dtype}, not a float type (F32, F64, F16 or BF16)", path.display())]
    TensorDtype { path: PathBuf, name: String, dtype: String },
    /// `train_step` or `accuracy` got another number of labels than images.
    #[error("{labels} labels for a batch of {batch} images")]
    LabelCount { labels: usize, batch: usize },
    /// A label is not one of the network's classes.
    #[error("label {label} of image {index} is out of range: the network has {classes} outputs")]
    LabelOutOfRange { index: usize, label: usize, classes: usize },
    /// Classification needs a flat output, one score per class.
    #[error("the network's output is {output}, not flat: classification needs one score per class")]
    OutputNotFlat { output: Shape },
    /// A data file is not what it claims to be.
    #[error("bad data file {}: {reason}", path.display())]
    DataFile { path: PathBuf, reason: String },
}
