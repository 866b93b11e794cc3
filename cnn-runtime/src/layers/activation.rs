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
            // `v < 0` keeps NaN, as PyTorch does. A value kept is written
            // anew (`+ 0.0`, `* 1.0`): `if c { *v } else { .. }` becomes a
            // masked store, which is slow on AMD and stalls the loads after it.
            Activation::Relu => values.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v + 0.0 }),
            Activation::LeakyRelu(alpha) => {
                values.iter_mut().for_each(|v| *v *= if *v < 0.0 { alpha } else { 1.0 })
            }
            Activation::Tanh => math::tanh_slice(values),
            Activation::Sigmoid => math::sigmoid_slice(values),
            // As PyTorch's hardtanh(0, 6): NaN stays NaN.
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
            // A `for` loop, as in `math::tanh_slice`.
            Activation::Silu => {
                for v in values {
                    *v *= math::sigmoid(*v);
                }
            }
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
    #[inline(always)]
    fn backward(self, x: &[f32], y: &[f32], dy: &mut [f32], channels: usize) {
        match self {
            // Kept values written anew, as in `apply`.
            Activation::Relu => {
                dy.iter_mut().zip(x).for_each(|(g, &x)| *g = if x > 0.0 { *g + 0.0 } else { 0.0 })
            }
            Activation::LeakyRelu(alpha) => {
                dy.iter_mut().zip(x).for_each(|(g, &x)| *g *= if x > 0.0 { 1.0 } else { alpha })
            }
            Activation::Tanh => dy.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
            Activation::Relu6 => dy
                .iter_mut()
                .zip(x)
                .for_each(|(g, &x)| *g = if (x > 0.0) & (x < 6.0) { *g + 0.0 } else { 0.0 }),
            Activation::Silu => {
                for (g, &x) in dy.iter_mut().zip(x) {
                    let s = math::sigmoid(x);
                    *g *= s * (1.0 + x * (1.0 - s));
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each activation's backward against central differences of its
    /// forward, at points away from the kinks of relu, relu6 and leaky relu.
    #[test]
    fn backward_is_the_derivative() {
        let xs: Vec<f32> = (0..61).map(|i| -7.03 + 0.237 * i as f32).collect();
        let all = [
            Activation::Relu,
            Activation::Relu6,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Silu,
            Activation::LeakyRelu(0.1),
        ];
        for act in all {
            let mut ys = xs.clone();
            act.apply(&mut ys, 1);
            let mut grad = vec![1.0; xs.len()];
            act.backward(&xs, &ys, &mut grad, 1);
            for ((&x, &analytic), i) in xs.iter().zip(&grad).zip(0..) {
                let at = |d: f64| {
                    let mut v = [(x as f64 + d) as f32];
                    act.apply(&mut v, 1);
                    v[0] as f64
                };
                let numeric = (at(1e-3) - at(-1e-3)) / 2e-3;
                assert!(
                    (numeric - analytic as f64).abs() < 2e-3,
                    "{act:?} at x[{i}] = {x}: {numeric} vs {analytic}"
                );
            }
        }
        // relu6 caps at 6, as PyTorch's.
        let mut v = [-1.0, 3.0, 7.5];
        Activation::Relu6.apply(&mut v, 1);
        assert_eq!(v, [0.0, 3.0, 6.0]);
    }
}
