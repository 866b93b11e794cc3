//! The runtime of `cnn`: layers, kernels and tensors.
//!
//! Activations are `f32` in NHWC layout, `(N, H, W, C)`, or `(N, F)` once
//! flat. A forward pass runs a chunk of the batch at a time, the chunks
//! shared between threads (`infer`). Convolution multiplies each output
//! pixel's patch, read from the input in place, by the weights
//! (`gemm_narrow`, on x86 with AVX2 or AVX-512), or packs patches with
//! `im2col` for `matrixmultiply::sgemm` (grouped convs, other CPUs,
//! gradients); with at most 8 output channels a group it is computed
//! directly (`direct`). Those kernels, the epilogues and the pools are
//! vectorised to the CPU's width at run time (`cpu`). The window
//! arithmetic of every layer is in [`layers::Axis`].
#![deny(unsafe_code)]

mod cpu;
pub mod data;
mod direct;
mod error;
pub mod gemm;
mod gemm_narrow;
mod im2col;
mod infer;
pub mod init;
pub mod io;
pub mod layers;
mod math;
mod network;
pub mod optim;
mod shape;
mod train;
mod window;
mod workspace;

pub use error::Error;
pub use infer::{Step, infer, into_array2, into_array4};
pub use network::{Network, Output};
pub use shape::{LayerInfo, Shape};
pub use train::{DropoutRng, TrainStep, accuracy, train_step};
pub use workspace::Workspace;

/// Checks that `x` is a batch of images of shape `expected`.
pub fn check_input(x: &ndarray::ArrayView4<'_, f32>, expected: Shape) -> Result<(), Error> {
    let ok = match expected {
        Shape::Hwc(h, w, c) => x.shape()[1..] == [h, w, c],
        Shape::Flat(_) => false,
    };
    if ok { Ok(()) } else { Err(Error::InputShape { expected, found: x.shape().to_vec() }) }
}

/// One image of `h*w*c` values as a batch of one.
pub fn image_view(x: &[f32], h: usize, w: usize, c: usize) -> ndarray::ArrayView4<'_, f32> {
    // The generated `predict` passes an array of exactly h*w*c values.
    ndarray::ArrayView4::from_shape((1, h, w, c), x).expect("an image of h*w*c values")
}
