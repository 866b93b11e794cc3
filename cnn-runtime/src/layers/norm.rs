//! Batch normalisation over the last axis (channels or features).

use cnn_shape::{Activation, Node, Op};
use ndarray::{Array, Array1, ArrayView1, ArrayViewMut1, Dimension};

use rayon::prelude::*;

use super::activation::Apply;
use super::epilogue::refill;
use super::tensor;
use crate::Error;
use crate::cpu;
use crate::init::InitRng;
use crate::workspace::{in_parts, in_shared_parts, training_part};

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

    /// Normalises `x` with the statistics of the batch (training mode)
    /// into `y`, rows of `C` values, then applies `act` there, keeping the
    /// normalised values in `normalized` (as long as `x`, overwritten);
    /// updates the running statistics with the momentum (the variance
    /// unbiased, as PyTorch) and returns what [`backward`](Self::backward)
    /// needs.
    pub(crate) fn train_forward(
        &mut self,
        x: &[f32],
        (y, act): (&mut [f32], Option<Activation>),
        mut normalized: Vec<f32>,
    ) -> BatchStats {
        let c = self.channels();
        let rows = x.len() / c.max(1);
        let sums = channel_sums(c, x, x, |sum, x, _| {
            for row in x.chunks_exact(c) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
        });
        let mean: Vec<f64> = sums.iter().map(|s| s / rows.max(1) as f64).collect();
        // A second pass over the deviations from the mean, which lose
        // nothing to cancellation where the squares' sum minus the sum's
        // square would.
        let squares = channel_sums(c, x, x, |sum, x, _| {
            for row in x.chunks_exact(c) {
                let each = sum.iter_mut().zip(row).zip(&mean);
                each.for_each(|((s, &v), m)| *s += (v as f64 - m) * (v as f64 - m));
            }
        });
        let biased: Vec<f64> = squares.iter().map(|s| s / rows.max(1) as f64).collect();
        let inv_std: Vec<f32> = biased.iter().map(|v| 1.0 / (*v as f32 + self.eps).sqrt()).collect();
        let mean_f32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let (gamma, beta) = (tensor::values(&self.weight), tensor::values(&self.bias));
        let normalize = |((y, xhat), x): ((&mut [f32], &mut [f32]), &[f32])| {
            cpu::vectorized(
                #[inline(always)]
                || {
                    let rows = y.chunks_exact_mut(c).zip(xhat.chunks_exact_mut(c)).zip(x.chunks_exact(c));
                    let (m, s, g, b) = (&mean_f32[..c], &inv_std[..c], &gamma[..c], &beta[..c]);
                    for ((y, xhat), x) in rows {
                        let (y, xhat, x) = (&mut y[..c], &mut xhat[..c], &x[..c]);
                        for ch in 0..c {
                            xhat[ch] = (x[ch] - m[ch]) * s[ch];
                            y[ch] = xhat[ch] * g[ch] + b[ch];
                        }
                    }
                    // The part is still in cache.
                    if let Some(act) = act {
                        act.apply(y, c);
                    }
                },
            )
        };
        let part = training_part(c);
        match in_shared_parts(x.len(), part) {
            true => y
                .par_chunks_mut(part)
                .zip(normalized.par_chunks_mut(part))
                .zip(x.par_chunks(part))
                .for_each(normalize),
            false => normalize(((y, &mut normalized), x)),
        }
        let m = self.momentum;
        for (ch, (rm, rv)) in self.running_mean.iter_mut().zip(self.running_var.iter_mut()).enumerate() {
            let unbiased = if rows > 1 { squares[ch] / (rows - 1) as f64 } else { biased[ch] };
            *rm = (1.0 - m) * *rm + m * mean[ch] as f32;
            *rv = (1.0 - m) * *rv + m * unbiased as f32;
        }
        BatchStats { normalized, inv_std }
    }

    /// The gradients of a training-mode pass: `dgamma`, `dbeta` overwritten,
    /// `dy` turned into the gradient of the input in place.
    pub(crate) fn backward(&self, stats: &BatchStats, dy: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) {
        let c = self.channels();
        let count = (dy.len() / c.max(1)).max(1) as f32;
        let sums = channel_sums(c, dy, &stats.normalized, |sum, dy, _| {
            for row in dy.chunks_exact(c) {
                sum.iter_mut().zip(row).for_each(|(s, &g)| *s += g as f64);
            }
        });
        dbeta.iter_mut().zip(&sums).for_each(|(d, &s)| *d = s as f32);
        let sums = channel_sums(c, dy, &stats.normalized, |sum, dy, xhat| {
            for (row, xhat) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                let each = sum.iter_mut().zip(row).zip(xhat);
                each.for_each(|((s, &g), &x)| *s += (g * x) as f64);
            }
        });
        dgamma.iter_mut().zip(&sums).for_each(|(d, &s)| *d = s as f32);
        // dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat))
        let scale: Vec<f32> =
            tensor::values(&self.weight).iter().zip(&stats.inv_std).map(|(g, s)| g * s / count).collect();
        let (dbeta, dgamma) = (&*dbeta, &*dgamma);
        in_parts(dy, c, |dy, at| {
            let xhat = &stats.normalized[at];
            cpu::vectorized(
                #[inline(always)]
                || {
                    let (s, b, d) = (&scale[..c], &dbeta[..c], &dgamma[..c]);
                    for (g, xhat) in dy.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
                        let (g, x) = (&mut g[..c], &xhat[..c]);
                        for ch in 0..c {
                            g[ch] = s[ch] * (count * g[ch] - b[ch] - x[ch] * d[ch]);
                        }
                    }
                },
            )
        });
    }
}

/// Per channel, the sum that `add` makes over parts of the rows of `a` and
/// the same rows of `b` (each part into a sum of its own, in `f64`), the
/// parts' sums added in order.
fn channel_sums(c: usize, a: &[f32], b: &[f32], add: impl Fn(&mut [f64], &[f32], &[f32]) + Sync) -> Vec<f64> {
    let part_sum = |(a, b): (&[f32], &[f32])| {
        let mut sum = vec![0.0f64; c];
        cpu::vectorized(
            #[inline(always)]
            || add(&mut sum, a, b),
        );
        sum
    };
    let part = training_part(c);
    // The same parts on one thread as on several: the sums' bits depend on them.
    let parts: Vec<Vec<f64>> = match in_shared_parts(a.len(), part) {
        true => a.par_chunks(part).zip(b.par_chunks(part)).map(part_sum).collect(),
        false => a.chunks(part).zip(b.chunks(part)).map(part_sum).collect(),
    };
    let mut total = vec![0.0f64; c];
    for sum in parts {
        total.iter_mut().zip(sum).for_each(|(t, s)| *t += s);
    }
    total
}

/// What a training-mode batchnorm keeps for its backward pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct BatchStats {
    normalized: Vec<f32>,
    inv_std: Vec<f32>,
}

impl BatchStats {
    /// The buffer of the normalised values, to be used again.
    pub(crate) fn into_buffer(self) -> Vec<f32> {
        self.normalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A batchnorm of `c` channels with scales and shifts of its own, and
    /// `rows` rows of values far from 0 (a mean of 3, as cancellation shows).
    fn layer_and_values(c: usize, rows: usize) -> (BatchNorm, Vec<f32>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
        let mut bn = BatchNorm::new(c, 1e-5);
        bn.weight.iter_mut().for_each(|g| *g = rng.random_range(0.5..1.5));
        bn.bias.iter_mut().for_each(|b| *b = rng.random_range(-0.5..0.5));
        let x = (0..rows * c).map(|_| 3.0 + rng.random_range(-1.0f32..1.0)).collect();
        let dy = (0..rows * c).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        (bn, x, dy)
    }

    /// `(y, dx, dgamma, dbeta)` of a training pass, every output NaN first.
    fn train_pass(bn: &mut BatchNorm, x: &[f32], dy: &[f32]) -> [Vec<f32>; 4] {
        let c = bn.channels();
        let mut y = vec![f32::NAN; x.len()];
        let stats = bn.train_forward(x, (&mut y, None), vec![f32::NAN; x.len()]);
        let (mut dx, mut dgamma, mut dbeta) = (dy.to_vec(), vec![f32::NAN; c], vec![f32::NAN; c]);
        bn.backward(&stats, &mut dx, &mut dgamma, &mut dbeta);
        [y, dx, dgamma, dbeta]
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0), "{what} {i}: {g} vs {w}");
        }
    }

    /// Batches of one part and of several (a part holds 2^15 values,
    /// rounded up to whole rows) against the formulas in `f64`, channel by
    /// channel over plain loops.
    #[test]
    fn training_pass_over_parts_matches_reference() {
        for (c, rows) in [(3, 7), (16, 2048), (5, 20_000), (64, 1500)] {
            let (mut bn, x, dy) = layer_and_values(c, rows);
            let (gamma, beta) = (bn.weight.to_vec(), bn.bias.to_vec());
            let [y, dx, dgamma, dbeta] = train_pass(&mut bn, &x, &dy);
            let n = rows as f64;
            let mut want = [vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]];
            for ch in 0..c {
                let at = |v: &[f32], r: usize| v[r * c + ch] as f64;
                let mean = (0..rows).map(|r| at(&x, r)).sum::<f64>() / n;
                let var = (0..rows).map(|r| (at(&x, r) - mean).powi(2)).sum::<f64>() / n;
                let inv_std = 1.0 / (var + 1e-5).sqrt();
                let xhat = |r| (at(&x, r) - mean) * inv_std;
                let sum_dy = (0..rows).map(|r| at(&dy, r)).sum::<f64>();
                let sum_dy_xhat = (0..rows).map(|r| at(&dy, r) * xhat(r)).sum::<f64>();
                for r in 0..rows {
                    want[0][r * c + ch] = xhat(r) * gamma[ch] as f64 + beta[ch] as f64;
                    want[1][r * c + ch] =
                        gamma[ch] as f64 * inv_std / n * (n * at(&dy, r) - sum_dy - xhat(r) * sum_dy_xhat);
                }
                want[2][ch] = sum_dy_xhat;
                want[3][ch] = sum_dy;
                let running_var = 0.9 + 0.1 * var * n / (n - 1.0);
                close(&[bn.running_mean[ch], bn.running_var[ch]], &[0.1 * mean, running_var], "running");
            }
            for (got, (want, what)) in
                [y, dx, dgamma, dbeta].iter().zip(want.iter().zip(["y", "dx", "dgamma", "dbeta"]))
            {
                close(got, want, &format!("c {c}, rows {rows}: {what}"));
            }
        }
    }

    /// Sums whose `f64` rounding depends on their order (values from 1e-15
    /// to 1e15) come out the same on any number of threads: the parts are
    /// the same.
    #[test]
    fn channel_sums_are_the_same_on_any_number_of_threads() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (c, rows) = (3, 40_000);
        let x: Vec<f32> = (0..rows * c)
            .map(|_| rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-15..=15)))
            .collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                channel_sums(c, &x, &x, |sum, x, _| {
                    for row in x.chunks_exact(c) {
                        sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
                    }
                })
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        // The order matters to these sums: one pass over all rows differs.
        let mut whole = vec![0.0f64; c];
        for row in x.chunks_exact(c) {
            whole.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
        }
        assert_ne!(one, whole);
    }

    /// The parts' sums are added in one order on any number of threads.
    #[test]
    fn training_pass_is_the_same_on_any_number_of_threads() {
        let (bn, x, dy) = layer_and_values(24, 9000);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut bn = bn.clone();
            let outputs = pool.install(|| train_pass(&mut bn, &x, &dy));
            (outputs, bn.running_mean.to_vec(), bn.running_var.to_vec())
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(3));
    }
}
