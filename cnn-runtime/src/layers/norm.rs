//! Batch normalisation over the last axis (channels or features).

use ndarray::{Array, Array1, Dimension};

use super::epilogue::refill;

/// `nn.BatchNorm2d` on NHWC, `nn.BatchNorm1d` on flat features.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale, `gamma`: `[C]`.
    pub weight: Array1<f32>,
    /// Shift, `beta`: `[C]`.
    pub bias: Array1<f32>,
    pub running_mean: Array1<f32>,
    pub running_var: Array1<f32>,
    pub eps: f32,
    pub momentum: f32,
}

impl BatchNorm {
    /// Weight 1, bias 0, running mean 0, running variance 1, as PyTorch.
    pub fn new(channels: usize, eps: f32) -> BatchNorm {
        BatchNorm {
            weight: Array1::ones(channels),
            bias: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            eps,
            momentum: 0.1,
        }
    }

    /// Per channel, `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`,
    /// written into the given vectors.
    pub fn scale_shift_into(&self, scale: &mut Vec<f32>, shift: &mut Vec<f32>) {
        refill(scale, self.weight.iter().zip(&self.running_var).map(|(g, v)| g / (v + self.eps).sqrt()));
        refill(shift, scale.iter().zip(&self.bias).zip(&self.running_mean).map(|((s, b), m)| b - m * s));
    }

    /// Normalises with the running statistics (inference mode), in place.
    pub fn forward<D: Dimension>(&self, mut x: Array<f32, D>) -> Array<f32, D> {
        let channels = self.weight.len();
        assert_eq!(x.shape().last(), Some(&channels), "batchnorm channels");
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        self.scale_shift_into(&mut scale, &mut shift);
        for mut lane in x.rows_mut() {
            lane.iter_mut().zip(&scale).zip(&shift).for_each(|((v, s), t)| *v = *v * s + t);
        }
        x
    }
}
