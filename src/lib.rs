//! Convolutional networks written inline, shape-checked while they compile,
//! run fast on the CPU.
//!
//! ```
//! cnn::cnn! {
//!     pub struct Net {
//!         input 28x28x1;
//!         conv 32 k5 relu;   // 24x24x32
//!         maxpool 2;         // 12x12x32
//!         flatten;           // 4608
//!         dense 4608 -> 10;  // a wrong number here does not compile
//!     }
//! }
//!
//! let net = Net::new();
//! let batch = cnn::ndarray::Array4::<f32>::zeros((2, 28, 28, 1));
//! let logits = net.forward(batch.view()).unwrap();
//! assert_eq!(logits.dim(), (2, 10));
//! assert_eq!(Net::OUTPUT, cnn::Shape::Flat(10));
//! ```
//!
//! The grammar is on [`cnn!`]; the runtime types are in [`layers`], training in
//! [`optim`], data sets in [`data`].

pub use cnn_macros::cnn;
pub use cnn_runtime::{Error, LayerInfo, Network, Output, Shape, data, init, layers, optim};
pub use ndarray;

/// What the generated code names; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use cnn_runtime::private::*;
    pub use cnn_runtime::{Error, Network, init, io, layers, onnx, optim};
    pub use ndarray;
}

/// The README's code blocks, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
