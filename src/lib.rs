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
//! [`optim`], data sets in [`data`]. Every network also has `save_onnx` (an
//! ONNX model for onnxruntime, Triton and other servers) and `pytorch()` (the
//! Python source of the same `nn.Module`, whose weights `load_pytorch` reads).
//!
//! Scope: stable Rust 1.89+, `f32` on the CPU, NHWC batches. The fastest
//! kernels run on x86-64 with AVX2 + FMA or AVX-512, chosen at run time;
//! other CPUs run the same networks through `matrixmultiply` and plain loops.

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
