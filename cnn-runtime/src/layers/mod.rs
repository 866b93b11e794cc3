//! The layers a generated network is made of, one file per family.
//!
//! Every layer takes and gives NHWC `(N, H, W, C)` or flat `(N, F)` arrays.
//! A layer's tensors are private: views and `set_*` methods change their
//! values, never their shapes, so a kernel can trust the geometry it gets.

mod activation;
mod conv;
mod dense;
mod epilogue;
mod norm;
mod pool;
pub(crate) mod tensor;
mod upsample;

pub(crate) use activation::Apply;
pub use activation::activate;
pub use cnn_shape::{Activation, Axis, ConvGeometry, Rounding, Window};
pub use conv::Conv2d;
pub(crate) use conv::{Input, LaidOut};
pub use dense::{Dense, flatten};
pub(crate) use epilogue::{Destination, Epilogue, Residual};
pub use norm::BatchNorm;
pub(crate) use norm::BatchStats;
pub use pool::{AvgPool2d, MaxPool2d, global_avg_pool, global_max_pool};
pub(crate) use pool::{Max, Reduce, global_pool, global_pool_backward};
pub(crate) use upsample::{upsample, upsample_backward};
