//! Activations, applied in place. `softmax` runs over the last axis.

use cnn_shape::Activation;
use ndarray::{Array, Dimension};

use crate::math;

/// Applies `activation` to every value of `x`, softmax over its last axis.
///
/// ```
/// use cnn_runtime::layers::{Activation, activate};
/// let y = activate(Activation::Relu, ndarray::arr1(&[-1.0f32, 2.0]));
/// assert_eq!(y, ndarray::arr1(&[0.0, 2.0]));
/// ```
pub fn activate<D: Dimension>(activation: Activation, mut x: Array<f32, D>) -> Array<f32, D> {
    let channels = x.shape().last().copied().unwrap_or(1);
    match x.as_slice_mut() {
        Some(values) => activation.apply(values, channels),
        None => {
            let mut standard = x.as_standard_layout().into_owned();
            activation.apply(standard.as_slice_mut().expect("standard layout is contiguous"), channels);
            x.assign(&standard);
        }
    }
    x
}

/// The kernels of an activation. `tanh` and `sigmoid` are within 1e-6 of
/// the exact value, tested over the whole f32 range.
pub(crate) trait Apply {
    fn apply(self, values: &mut [f32], channels: usize);
    fn backward(self, x: &[f32], y: &[f32], dy: &mut [f32], channels: usize);
}

impl Apply for Activation {
    /// Applies the activation to rows of `channels` values, in place.
    #[inline(always)]
    fn apply(self, values: &mut [f32], channels: usize) {
        match self {
            // `v < 0` keeps NaN, as PyTorch does.
            Activation::Relu => values.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
            Activation::LeakyRelu(alpha) => {
                values.iter_mut().for_each(|v| *v = if *v < 0.0 { alpha * *v } else { *v })
            }
            Activation::Tanh => math::tanh_slice(values),
            Activation::Sigmoid => math::sigmoid_slice(values),
            // As PyTorch's hardtanh(0, 6): NaN stays NaN.
            Activation::Relu6 => values.iter_mut().for_each(|v| {
                *v = if *v < 0.0 {
                    0.0
                } else if *v > 6.0 {
                    6.0
                } else {
                    *v
                }
            }),
            Activation::Silu => values.iter_mut().for_each(|v| *v *= math::sigmoid(*v)),
            Activation::Softmax => {
                for row in values.chunks_exact_mut(channels.max(1)) {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    row.iter_mut().for_each(|v| *v = math::exp(*v - max));
                    let scale = 1.0 / row.iter().sum::<f32>();
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }
        }
    }

    /// Turns `dy`, the gradient of the output `y` of input `x`, into the
    /// gradient of the input, in place.
    fn backward(self, x: &[f32], y: &[f32], dy: &mut [f32], channels: usize) {
        match self {
            Activation::Relu => dy.iter_mut().zip(x).for_each(|(g, &x)| *g = if x > 0.0 { *g } else { 0.0 }),
            Activation::LeakyRelu(alpha) => {
                dy.iter_mut().zip(x).for_each(|(g, &x)| *g = if x > 0.0 { *g } else { alpha * *g })
            }
            Activation::Tanh => dy.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
            Activation::Relu6 => {
                dy.iter_mut().zip(x).for_each(|(g, &x)| *g = if x > 0.0 && x < 6.0 { *g } else { 0.0 })
            }
            Activation::Silu => dy.iter_mut().zip(x).for_each(|(g, &x)| {
                let s = math::sigmoid(x);
                *g *= s * (1.0 + x * (1.0 - s));
            }),
            Activation::Sigmoid => dy.iter_mut().zip(y).for_each(|(g, &y)| *g *= y * (1.0 - y)),
            Activation::Softmax => {
                for (g, y) in dy.chunks_exact_mut(channels.max(1)).zip(y.chunks_exact(channels.max(1))) {
                    let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
                    g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
                }
            }
        }
    }
}
