//! The layers a generated network is made of, one file per family.
//!
//! Every layer takes and gives NHWC `(N, H, W, C)` or flat `(N, F)` arrays.

mod activation;
mod conv;
mod dense;
mod epilogue;
mod norm;
mod pool;

pub use crate::window::Axis;
pub use activation::Activation;
pub use conv::{Conv2d, ConvGeometry};
pub use dense::{Dense, flatten};
pub use epilogue::Epilogue;
pub use norm::{BatchNorm, BatchStats};
pub use pool::{AvgPool2d, MaxPool2d, global_avg_pool, global_max_pool, global_pool, global_pool_backward};
