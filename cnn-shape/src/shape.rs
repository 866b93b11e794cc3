//! The shape of one image as it flows through a network, and what the macro
//! tells about each layer.

use std::fmt;

/// The shape of one image (batch axis excluded).
///
/// ```
/// use cnn_shape::Shape;
/// assert_eq!(Shape::Hwc(28, 28, 1).to_string(), "28x28x1");
/// assert_eq!(Shape::Flat(10).len(), 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Height, width, channels.
    Hwc(usize, usize, usize),
    /// A flat vector of features.
    Flat(usize),
}

impl Shape {
    /// The number of values in one image of this shape.
    ///
    /// # Panics
    ///
    /// On overflow, which the macro rules out for every shape it emits.
    pub const fn len(self) -> usize {
        match self {
            Shape::Hwc(h, w, c) => h * w * c,
            Shape::Flat(n) => n,
        }
    }

    /// The number of values, or `None` if it overflows `usize`.
    pub const fn checked_len(self) -> Option<usize> {
        match self {
            Shape::Hwc(h, w, c) => match h.checked_mul(w) {
                Some(hw) => hw.checked_mul(c),
                None => None,
            },
            Shape::Flat(n) => Some(n),
        }
    }

    /// Whether the shape holds no value at all.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The size of the last axis: channels, or features.
    pub const fn channels(self) -> usize {
        match self {
            Shape::Hwc(_, _, c) => c,
            Shape::Flat(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Hwc(h, w, c) => write!(f, "{h}x{w}x{c}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// One layer of a network as the macro worked it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The field name, or the keyword of a layer without parameters.
    pub name: &'static str,
    /// The layer as written in the macro, e.g. `conv 32 k5 relu`.
    pub source: &'static str,
    /// The shape of one image after this layer.
    pub output: Shape,
    /// Trainable parameters, counted as PyTorch does.
    pub params: usize,
}
