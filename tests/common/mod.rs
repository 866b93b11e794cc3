//! Plain nested-loop references, written from PyTorch's definitions and
//! sharing no code with the runtime.
#![allow(dead_code)]

use cnn::ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `f` run in a rayon pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn random4(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
}

/// One spatial axis: input size, kernel, stride, padding before, dilation, output size.
#[derive(Clone, Copy, Debug)]
pub struct Win {
    pub n: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub d: usize,
    pub out: usize,
}

impl Win {
    /// The input index of tap `i` of window `o`, or `None` in the padding.
    fn at(&self, o: usize, i: usize) -> Option<usize> {
        let pos = (o * self.s + i * self.d) as i64 - self.p as i64;
        (0..self.n as i64).contains(&pos).then_some(pos as usize)
    }
}

/// `nn.Conv2d` on NHWC: weight `[KH, KW, CIN/G, COUT]`.
pub fn conv(
    x: ArrayView4<f32>,
    weight: ArrayView4<f32>,
    bias: Option<ArrayView1<f32>>,
    h: Win,
    w: Win,
    groups: usize,
) -> Array4<f32> {
    let (n, _, _, cin) = x.dim();
    let cout = weight.dim().3;
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let mut y = Array4::zeros((n, h.out, w.out, cout));
    for b in 0..n {
        for oy in 0..h.out {
            for ox in 0..w.out {
                for o in 0..cout {
                    let g = o / cout_g;
                    let mut sum = bias.map_or(0.0, |b| b[o]) as f64;
                    for ky in 0..h.k {
                        for kx in 0..w.k {
                            if let (Some(iy), Some(ix)) = (h.at(oy, ky), w.at(ox, kx)) {
                                for ci in 0..cin_g {
                                    sum += x[[b, iy, ix, g * cin_g + ci]] as f64
                                        * weight[[ky, kx, ci, o]] as f64;
                                }
                            }
                        }
                    }
                    y[[b, oy, ox, o]] = sum as f32;
                }
            }
        }
    }
    y
}

/// `nn.MaxPool2d`: padding is never the max.
pub fn max_pool(x: ArrayView4<f32>, h: Win, w: Win) -> Array4<f32> {
    let (n, _, _, c) = x.dim();
    Array4::from_shape_fn((n, h.out, w.out, c), |(b, oy, ox, ch)| {
        let mut best = f32::NEG_INFINITY;
        for ky in 0..h.k {
            for kx in 0..w.k {
                if let (Some(iy), Some(ix)) = (h.at(oy, ky), w.at(ox, kx)) {
                    best = best.max(x[[b, iy, ix, ch]]);
                }
            }
        }
        best
    })
}

/// `nn.AvgPool2d(count_include_pad=True)`: the divisor counts cells inside
/// input and padding, not those a `ceil` window hangs past the padding.
pub fn avg_pool(x: ArrayView4<f32>, h: Win, w: Win) -> Array4<f32> {
    let (n, _, _, c) = x.dim();
    let inside_padding =
        |win: Win, o: usize| (0..win.k).filter(|&i| o * win.s + i < win.n + 2 * win.p).count();
    Array4::from_shape_fn((n, h.out, w.out, c), |(b, oy, ox, ch)| {
        let mut sum = 0.0f64;
        for ky in 0..h.k {
            for kx in 0..w.k {
                if let (Some(iy), Some(ix)) = (h.at(oy, ky), w.at(ox, kx)) {
                    sum += x[[b, iy, ix, ch]] as f64;
                }
            }
        }
        (sum / (inside_padding(h, oy) * inside_padding(w, ox)) as f64) as f32
    })
}

/// `nn.Linear` with the weight stored `[IN, OUT]`.
pub fn dense(x: ArrayView2<f32>, weight: ArrayView2<f32>, bias: Option<ArrayView1<f32>>) -> Array2<f32> {
    let (n, inputs) = x.dim();
    let outputs = weight.dim().1;
    Array2::from_shape_fn((n, outputs), |(b, o)| {
        let dot: f64 = (0..inputs).map(|i| x[[b, i]] as f64 * weight[[i, o]] as f64).sum();
        (dot + bias.map_or(0.0, |b| b[o] as f64)) as f32
    })
}

/// NHWC flatten: H, W, C order.
pub fn flatten(x: ArrayView4<f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    Array2::from_shape_fn((n, h * w * c), |(b, i)| x[[b, i / (w * c), (i / c) % w, i % c]])
}

pub fn global_avg(x: ArrayView4<f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    Array2::from_shape_fn((n, c), |(b, ch)| {
        let mut sum = 0.0f64;
        for iy in 0..h {
            for ix in 0..w {
                sum += x[[b, iy, ix, ch]] as f64;
            }
        }
        (sum / (h * w) as f64) as f32
    })
}

/// `nn.BatchNorm` in eval mode over the last axis.
pub fn batchnorm(
    x: &[f32],
    c: usize,
    gamma: &ArrayView1<f32>,
    beta: &ArrayView1<f32>,
    mean: &ArrayView1<f32>,
    var: &ArrayView1<f32>,
    eps: f32,
) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i % c;
            (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
        })
        .collect()
}

pub fn tanh(x: f32) -> f32 {
    let (a, b) = ((x as f64).exp(), (-x as f64).exp());
    ((a - b) / (a + b)) as f32
}

pub fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + (-x as f64).exp())) as f32
}

pub fn softmax_rows(x: &Array2<f32>) -> Array2<f32> {
    let mut y = x.clone();
    for mut row in y.rows_mut() {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
        row.mapv_inplace(|v| (((v - max) as f64).exp() / sum) as f32);
    }
    y
}

/// Every element within `tol` relative (to at least 1), shapes equal.
pub fn assert_close<D: cnn::ndarray::Dimension>(
    actual: &cnn::ndarray::Array<f32, D>,
    expected: &cnn::ndarray::Array<f32, D>,
    tol: f32,
    what: &str,
) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes");
    for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{what}: element {i}: {a} vs {e}");
    }
}

/// The axis of a window, its output from the crate's arithmetic (rounded
/// down, or up with `ceil`); an output of 0 where the window does not fit.
pub fn axis(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_before: usize,
    pad_after: usize,
    dilation: usize,
    ceil: bool,
) -> cnn::layers::Axis {
    use cnn::layers::{Axis, Rounding, Window};
    let window = Window { input, kernel, stride, pad_before, pad_after, dilation };
    let rounding = if ceil { Rounding::Ceil } else { Rounding::Floor };
    Axis::new(window, rounding).unwrap_or(Axis {
        input,
        kernel,
        stride,
        pad_before,
        pad_after,
        dilation,
        output: 0,
    })
}
