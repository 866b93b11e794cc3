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

    /// Normalises with the statistics of the batch (training mode), in
    /// place, over rows of `C` values; updates the running statistics with
    /// the momentum (the variance unbiased, as PyTorch) and returns what
    /// [`backward`](Self::backward) needs.
    pub fn train_forward(&mut self, x: &mut [f32]) -> BatchStats {
        let c = self.weight.len();
        let count = x.len() / c.max(1);
        let (mut mean, mut var) = (vec![0.0f64; c], vec![0.0f64; c]);
        for row in x.chunks_exact(c) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= count.max(1) as f64);
        for row in x.chunks_exact(c) {
            var.iter_mut().zip(row).zip(&mean).for_each(|((s, &v), m)| *s += (v as f64 - m).powi(2));
        }
        let biased: Vec<f64> = var.iter().map(|s| s / count.max(1) as f64).collect();
        let inv_std: Vec<f32> = biased.iter().map(|v| 1.0 / (*v as f32 + self.eps).sqrt()).collect();
        let mut normalized = vec![0.0f32; x.len()];
        for (row, out) in x.chunks_exact_mut(c).zip(normalized.chunks_exact_mut(c)) {
            for ch in 0..c {
                let xhat = (row[ch] - mean[ch] as f32) * inv_std[ch];
                out[ch] = xhat;
                row[ch] = xhat * self.weight[ch] + self.bias[ch];
            }
        }
        let m = self.momentum;
        for (ch, (rm, rv)) in self.running_mean.iter_mut().zip(self.running_var.iter_mut()).enumerate() {
            let unbiased = if count > 1 { var[ch] / (count - 1) as f64 } else { biased[ch] };
            *rm = (1.0 - m) * *rm + m * mean[ch] as f32;
            *rv = (1.0 - m) * *rv + m * unbiased as f32;
        }
        BatchStats { normalized, inv_std }
    }

    /// The gradients of a training-mode pass: `dgamma`, `dbeta` overwritten,
    /// `dy` turned into the gradient of the input in place.
    pub fn backward(&self, stats: &BatchStats, dy: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) {
        let c = self.weight.len();
        let count = (dy.len() / c.max(1)).max(1) as f32;
        dgamma.fill(0.0);
        dbeta.fill(0.0);
        for (g, xhat) in dy.chunks_exact(c).zip(stats.normalized.chunks_exact(c)) {
            for ch in 0..c {
                dbeta[ch] += g[ch];
                dgamma[ch] += g[ch] * xhat[ch];
            }
        }
        // dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat))
        for (g, xhat) in dy.chunks_exact_mut(c).zip(stats.normalized.chunks_exact(c)) {
            for ch in 0..c {
                let scale = self.weight[ch] * stats.inv_std[ch] / count;
                g[ch] = scale * (count * g[ch] - dbeta[ch] - xhat[ch] * dgamma[ch]);
            }
        }
    }
}

/// What a training-mode batchnorm keeps for its backward pass.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    normalized: Vec<f32>,
    inv_std: Vec<f32>,
}
