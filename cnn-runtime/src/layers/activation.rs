//! Activations, applied in place. `softmax` runs over the last axis.

use ndarray::{Array, Dimension};

/// An activation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    /// Over channels (NHWC) or features (flat).
    Softmax,
    /// With the slope for negative inputs (0.01 by default, as PyTorch).
    LeakyRelu(f32),
}

impl Activation {
    /// Applies the activation to every value, in place.
    pub fn forward<D: Dimension>(self, mut x: Array<f32, D>) -> Array<f32, D> {
        match self {
            Activation::Relu => x.mapv_inplace(|v| if v < 0.0 { 0.0 } else { v }),
            Activation::Tanh => x.mapv_inplace(f32::tanh),
            Activation::Sigmoid => x.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp())),
            Activation::LeakyRelu(alpha) => x.mapv_inplace(|v| if v < 0.0 { alpha * v } else { v }),
            Activation::Softmax => {
                for mut lane in x.rows_mut() {
                    let max = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    lane.mapv_inplace(|v| (v - max).exp());
                    let sum = lane.sum();
                    lane.mapv_inplace(|v| v / sum);
                }
            }
        }
        x
    }
}
