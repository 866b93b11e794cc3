//! Batch normalisation over the last axis (channels or features).

use cnn_shape::{Node, Op};
use ndarray::{Array, Array1, ArrayView1, ArrayViewMut1, Dimension};

use super::epilogue::refill;
use super::tensor;
use crate::Error;
use crate::init::InitRng;

/// `nn.BatchNorm2d` on NHWC, `nn.BatchNorm1d` on flat features. Its
/// tensors, all `[C]`, can be changed through views, but not resized.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale, `gamma`.
    weight: Array1<f32>,
    /// Shift, `beta`.
    bias: Array1<f32>,
    running_mean: Array1<f32>,
    running_var: Array1<f32>,
    eps: f32,
    momentum: f32,
}

/// The accessors of one `[C]` tensor: a view, a mutable view, a setter.
macro_rules! accessors {
    ($($field:ident, $field_mut:ident, $set:ident, $what:literal;)*) => {$(
        #[doc = concat!("The ", $what, ", `[C]`.")]
        pub fn $field(&self) -> ArrayView1<'_, f32> {
            self.$field.view()
        }

        pub fn $field_mut(&mut self) -> ArrayViewMut1<'_, f32> {
            self.$field.view_mut()
        }

        #[doc = concat!("Replaces the ", $what, "; an error if it is not `[C]`.")]
        pub fn $set(&mut self, values: Array1<f32>) -> Result<(), Error> {
            tensor::replace(&mut self.$field, values, concat!("batchnorm ", $what))
        }
    )*};
}

impl BatchNorm {
    /// Weight 1, bias 0, running mean 0, running variance 1, as PyTorch;
    /// momentum 0.1.
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

    /// The layer of a plan node.
    #[doc(hidden)]
    pub fn from_node(node: &Node, _: &mut InitRng) -> BatchNorm {
        let Op::BatchNorm { channels, eps } = node.op else {
            unreachable!("the macro pairs batchnorm fields with batchnorm nodes")
        };
        BatchNorm::new(channels, eps)
    }

    accessors! {
        weight, weight_mut, set_weight, "scale (gamma)";
        bias, bias_mut, set_bias, "shift (beta)";
        running_mean, running_mean_mut, set_running_mean, "running mean";
        running_var, running_var_mut, set_running_var, "running variance";
    }

    /// The channels it normalises.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    pub fn eps(&self) -> f32 {
        self.eps
    }

    pub fn momentum(&self) -> f32 {
        self.momentum
    }

    /// The trainable tensors, weight then bias.
    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        vec![tensor::values_mut(&mut self.weight), tensor::values_mut(&mut self.bias)]
    }

    /// Per channel, `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`,
    /// written into the given vectors.
    pub(crate) fn scale_shift_into(&self, scale: &mut Vec<f32>, shift: &mut Vec<f32>) {
        refill(scale, self.weight.iter().zip(&self.running_var).map(|(g, v)| g / (v + self.eps).sqrt()));
        refill(shift, scale.iter().zip(&self.bias).zip(&self.running_mean).map(|((s, b), m)| b - m * s));
    }

    /// Normalises with the running statistics (inference mode), in place.
    pub fn forward<D: Dimension>(&self, mut x: Array<f32, D>) -> Result<Array<f32, D>, Error> {
        let channels = self.weight.len();
        if x.shape().last() != Some(&channels) {
            let found = x.shape().to_vec();
            return Err(Error::LayerInput { layer: "batchnorm", expected: vec![channels], found });
        }
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        self.scale_shift_into(&mut scale, &mut shift);
        for mut lane in x.rows_mut() {
            lane.iter_mut().zip(&scale).zip(&shift).for_each(|((v, s), t)| *v = *v * s + t);
        }
        Ok(x)
    }

    /// Normalises with the statistics of the batch (training mode), in
    /// place, over rows of `C` values; updates the running statistics with
    /// the momentum (the variance unbiased, as PyTorch) and returns what
    /// [`backward`](Self::backward) needs.
    pub(crate) fn train_forward(&mut self, x: &mut [f32]) -> BatchStats {
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
    pub(crate) fn backward(&self, stats: &BatchStats, dy: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) {
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
pub(crate) struct BatchStats {
    normalized: Vec<f32>,
    inv_std: Vec<f32>,
}
