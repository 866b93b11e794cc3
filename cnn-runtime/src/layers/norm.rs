//! Batch normalisation over the last axis (channels or features).

use ndarray::{Array, Array1, Dimension};

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

    /// Normalises with the running statistics (inference mode), in place.
    pub fn forward<D: Dimension>(&self, mut x: Array<f32, D>) -> Array<f32, D> {
        let c = self.weight.len();
        assert_eq!(x.shape().last(), Some(&c), "batchnorm channels");
        // y = x * scale + shift, with scale = gamma / sqrt(var + eps).
        let scale: Vec<f32> =
            self.weight.iter().zip(&self.running_var).map(|(g, v)| g / (v + self.eps).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|i| self.bias[i] - self.running_mean[i] * scale[i]).collect();
        for mut lane in x.rows_mut() {
            for (i, v) in lane.iter_mut().enumerate() {
                *v = *v * scale[i] + shift[i];
            }
        }
        x
    }
}
