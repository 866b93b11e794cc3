//! The input gradient of a convolution as each output pixel's gradient
//! spread over its window: `dx[window of p] += W dy[p]`, each kernel row of
//! the window a run of the NHWC input (no groups, no dilation across), added
//! to in place. Where the gradient is not itself a convolution of `dy`
//! (strides, or windows that do not cover every cell `k - 1` times over),
//! this replaces `dcol = dy W^T`, a tile as wide as a patch for every
//! output pixel, and `col2im`, a second pass over it.
//!
//! A pixel's runs are cut into vectors ("units"); up to 12 of them
//! take their sums over the output channels together, in registers, from
//! one broadcast of each value of `dy`, then are added to `dx`. With
//! AVX-512's 32 registers, two pixels' sums are taken together, each
//! weight loaded once for both. Each sum
//! runs over the channels in order and the pixels are added in a fixed
//! order, so the result does not depend on the thread count.

use cnn_shape::ConvGeometry;
use pulp::{Simd, WithSimd};

use crate::cpu::Kernels;
use crate::gemm_narrow::{self, first_lanes, load, store};
use crate::im2col::{full_range, inside_taps};
use crate::layers::tensor;

/// The most units whose sums are taken together: with a broadcast and a
/// loaded weight, 14 of AVX2's 16 vector registers.
const MOST_UNITS: usize = 12;

/// A convolution's weights laid out to spread gradients with: for each
/// output channel, each kernel row's `KW * CIN` weights, from a vector's
/// boundary (`row` values apart), so that a unit's weights are one load.
pub(crate) struct Spread {
    /// From a cache line's boundary on ([`tensor::line_aligned`]).
    weights: Vec<f32>,
    /// Values from one kernel row's weights to the next's.
    row: usize,
    geometry: ConvGeometry,
    kernels: Kernels,
}

/// Part of a kernel row of one pixel's window, a vector or less.
struct Unit {
    /// Where it starts in the image's `dx`.
    dx: usize,
    /// Where its weights start in each output channel's.
    weights: usize,
    len: usize,
}

impl Spread {
    /// The weights `[KH, KW, CIN, COUT]` laid out for `g`, where the kernel
    /// runs: on x86 with AVX2 + FMA or AVX-512, without groups or dilation
    /// across, and where they fit in L1. Every group of units reads every
    /// output channel's weights; from L2, the loads would cost more than
    /// `dy W^T`, a GEMM that takes B in parts which fit.
    pub(crate) fn new(weight: &[f32], g: &ConvGeometry, kernels: Kernels) -> Option<Spread> {
        const L1_BYTES: usize = 32 * 1024;
        // The same kernel rows as the forward's GEMM reads in place.
        if !gemm_narrow::reads_patches(g, kernels) {
            return None;
        }
        assert_eq!(weight.len(), g.patch_len() * g.out_channels, "spread: weight shape");
        let lanes = crate::cpu::lanes(kernels);
        let (run, cout, kh) = (g.width.kernel * g.in_channels, g.out_channels, g.height.kernel);
        let row = run.next_multiple_of(lanes);
        if cout * kh * row * size_of::<f32>() > L1_BYTES {
            return None;
        }
        // A unit's load reads a vector from where it starts: the last ones
        // read past their row, into the next or into a vector of slack.
        // From a cache line's boundary, so that unclipped units load whole
        // lines (a row is whole vectors).
        let mut buffer = Vec::new();
        let weights = tensor::line_aligned(&mut buffer, cout * kh * row + lanes);
        for (tap, w) in weight.chunks_exact(cout).enumerate() {
            let (ky, at) = (tap / run, tap % run);
            for (o, &v) in w.iter().enumerate() {
                weights[(o * kh + ky) * row + at] = v;
            }
        }
        Some(Spread { weights: buffer, row, geometry: *g, kernels })
    }

    /// Adds the input gradient of the images whose output gradient is
    /// `dy` to `dx`.
    ///
    /// # Panics
    ///
    /// If `dy` and `dx` are not the same whole number of images.
    pub(crate) fn add(&self, dy: &[f32], dx: &mut [f32]) {
        let g = &self.geometry;
        let images = dx.len() / g.input_len().max(1);
        assert!(dx.len() == images * g.input_len() && dy.len() == images * g.output_len(), "spread lengths");
        for (dy, dx) in dy.chunks_exact(g.output_len().max(1)).zip(dx.chunks_exact_mut(g.input_len().max(1)))
        {
            self.kernels.arch().dispatch(SpreadImage { spread: self, dy, dx });
        }
    }
}

struct SpreadImage<'a> {
    spread: &'a Spread,
    /// One image's.
    dy: &'a [f32],
    dx: &'a mut [f32],
}

impl WithSimd for SpreadImage<'_> {
    type Output = ();

    /// The pixels by groups of as many units as balance a window's.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let units = self.spread.geometry.height.kernel * self.spread.row / lanes;
        let groups = units.div_ceil(MOST_UNITS);
        match units.div_ceil(groups.max(1)) {
            0..=4 => self.pixels::<S, 4>(simd),
            5..=6 => self.pixels::<S, 6>(simd),
            7..=8 => self.pixels::<S, 8>(simd),
            9..=10 => self.pixels::<S, 10>(simd),
            _ => self.pixels::<S, MOST_UNITS>(simd),
        }
    }
}

impl SpreadImage<'_> {
    /// Every pixel's gradient, `UNITS` units of its window at a time.
    #[inline(always)]
    fn pixels<S: Simd, const UNITS: usize>(self, simd: S) {
        let SpreadImage { spread: Spread { weights, row, geometry: g, .. }, dy, dx } = self;
        let (weights, row) = (&weights[tensor::to_line(weights)..], *row);
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let (h, w, cin, cout) = (g.height, g.width, g.in_channels, g.out_channels);
        let (run, channel_len) = (w.kernel * cin, h.kernel * row);
        // The units of a window whose taps all fall inside the image, from
        // its first cell; those of a window that padding clips, each time.
        let whole_window: Vec<Unit> = (0..h.kernel)
            .flat_map(|ky| {
                let first_dx = ky * h.dilation * w.input * cin;
                (0..run).step_by(lanes).map(move |at| Unit {
                    dx: first_dx + at,
                    weights: ky * row + at,
                    len: lanes.min(run - at),
                })
            })
            .collect();
        let mut clipped = Vec::with_capacity(whole_window.len());
        let (inside_y, inside_x) = (full_range(h), full_range(w));
        // The pixels of a row `apart` at a time, in as many passes: a
        // window's vectors reach as far as `row` values, and a vector read
        // of a cell just written by a vector that starts elsewhere waits
        // for the write to reach the cache.
        let apart = row.div_ceil(w.stride * cin);
        let row_order = (0..apart.min(w.output)).flat_map(|phase| (phase..w.output).step_by(apart));
        let pixels = (0..h.output).flat_map(|oy| row_order.clone().map(move |ox| (oy, ox)));
        // Interior pixels two at a time where the registers hold the sums
        // of both (AVX-512's 32, for 2 x 12 units): each weight is loaded
        // once for the two.
        let pairs = lanes == 16;
        let mut waiting = None;
        let weights = (weights, channel_len);
        for (oy, ox) in pixels {
            let dy = &dy[(oy * w.output + ox) * cout..][..cout];
            if !(inside_y.contains(&oy) && inside_x.contains(&ox)) {
                clip(g, (oy, ox), (row, lanes), &mut clipped);
                spread_units::<S, 1, UNITS>(simd, [(0, dy)], &clipped, weights, dx);
                continue;
            }
            let pixel = ((h.start(oy) as usize * w.input + w.start(ox) as usize) * cin, dy);
            match (pairs, waiting.take()) {
                (false, _) => spread_units::<S, 1, UNITS>(simd, [pixel], &whole_window, weights, dx),
                (true, None) => waiting = Some(pixel),
                (true, Some(first)) => {
                    spread_units::<S, 2, UNITS>(simd, [first, pixel], &whole_window, weights, dx)
                }
            }
        }
        if let Some(pixel) = waiting {
            spread_units::<S, 1, UNITS>(simd, [pixel], &whole_window, weights, dx);
        }
    }
}

/// Adds the gradients `dy` of `P` pixels spread over their windows, whose
/// `units` start at `first` in `dx`, `UNITS` at a time.
#[inline(always)]
fn spread_units<S: Simd, const P: usize, const UNITS: usize>(
    simd: S,
    pixels: [(usize, &[f32]); P],
    units: &[Unit],
    weights: (&[f32], usize),
    dx: &mut [f32],
) {
    for group in units.chunks(UNITS) {
        // A group of fewer units sums the first weights for the rest, and
        // drops them: loops of a fixed count keep every sum in a register.
        let starts: [usize; UNITS] = std::array::from_fn(|u| group.get(u).map_or(0, |u| u.weights));
        let sums = sum_units(simd, pixels.map(|(_, dy)| dy), weights, starts);
        for ((first, _), sums) in pixels.into_iter().zip(sums) {
            for (u, sum) in sums.into_iter().enumerate() {
                if let Some(unit) = group.get(u) {
                    add_to(simd, &mut dx[first + unit.dx..], unit.len, sum);
                }
            }
        }
    }
}

/// The units of the window of pixel `(oy, ox)` that padding clips, into
/// `units`: each kernel row's taps inside the image.
fn clip(g: &ConvGeometry, (oy, ox): (usize, usize), (row, lanes): (usize, usize), units: &mut Vec<Unit>) {
    let (h, w, cin) = (g.height, g.width, g.in_channels);
    let (start, (lo, hi)) = (w.start(ox), inside_taps(w, ox));
    units.clear();
    for ky in 0..h.kernel {
        let Some(iy) = h.tap(oy, ky) else { continue };
        let first_dx = (iy * w.input + (start + lo as isize) as usize) * cin;
        let first_weight = ky * row + lo * cin;
        for at in (0..(hi - lo) * cin).step_by(lanes) {
            let len = lanes.min((hi - lo) * cin - at);
            units.push(Unit { dx: first_dx + at, weights: first_weight + at, len });
        }
    }
}

/// Adds the first `len` lanes of `sum` to the start of `dx`. Where `dx`
/// goes on for a whole vector, it is read and written whole, the lanes
/// past `len` written back as they were read: a partial load and store
/// cost a call each.
#[inline(always)]
fn add_to<S: Simd>(simd: S, dx: &mut [f32], len: usize, sum: S::f32s) {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    if dx.len() < lanes {
        let dx = &mut dx[..len];
        return store(simd, dx, simd.add_f32s(load(simd, dx), sum));
    }
    let old = load(simd, dx);
    let new = simd.add_f32s(old, sum);
    let new = match len < lanes {
        true => simd.select_f32s(first_lanes(simd, len), new, old),
        false => new,
    };
    store(simd, dx, new);
}

/// For each of `P` pixels, the sums over the output channels `o` of
/// `dy[o]` times the vector of weights at `starts[u]` in channel `o`'s,
/// the channels `channel_len` apart. The bounds are checked once, not load
/// by load: checked, the loads cost more than the multiply-adds.
#[inline(always)]
#[allow(unsafe_code)]
fn sum_units<S: Simd, const P: usize, const UNITS: usize>(
    simd: S,
    dy: [&[f32]; P],
    (weights, channel_len): (&[f32], usize),
    starts: [usize; UNITS],
) -> [[S::f32s; UNITS]; P] {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    let cout = dy.first().map_or(0, |dy| dy.len());
    let reach = starts.iter().max().map_or(0, |&start| start + lanes);
    assert!(dy.iter().all(|dy| dy.len() == cout), "spread: gradients");
    assert!(cout == 0 || (cout - 1) * channel_len + reach <= weights.len(), "spread: weights");
    let mut sums = [[simd.splat_f32s(0.0); UNITS]; P];
    let mut channel = weights.as_ptr();
    // `o` indexes each of the pixels' gradients.
    #[allow(clippy::needless_range_loop)]
    for o in 0..cout {
        let gradients: [S::f32s; P] = std::array::from_fn(|p| simd.splat_f32s(dy[p][o]));
        for (u, start) in starts.into_iter().enumerate() {
            // SAFETY: `lanes` values from `start` in channel `o < cout` are
            // within `weights` (asserted above).
            let vector = load(simd, unsafe { std::slice::from_raw_parts(channel.add(start), lanes) });
            for (sums, &gradient) in sums.iter_mut().zip(&gradients) {
                sums[u] = simd.mul_add_f32s(gradient, vector, sums[u]);
            }
        }
        channel = channel.wrapping_add(channel_len);
    }
    sums
}

#[cfg(test)]
mod tests {
    use cnn_shape::Axis;

    use super::*;

    fn axis(input: usize, kernel: usize, stride: usize, pad: (usize, usize), dilation: usize) -> Axis {
        let span = pad.0 + input + pad.1 - dilation * (kernel - 1) - 1;
        Axis {
            input,
            kernel,
            stride,
            pad_before: pad.0,
            pad_after: pad.1,
            dilation,
            output: span / stride + 1,
        }
    }

    /// Against the sum written out by nested loops: strides, padding that
    /// clips runs at every side, dilation down the rows, runs of one
    /// vector or several with a part of one, channel counts below and
    /// above a vector, units more than one group holds, on every kernel
    /// variant the CPU runs.
    #[test]
    fn spreads_as_the_nested_loops_do() {
        let geometries = [
            (axis(14, 5, 1, (0, 0), 1), axis(14, 5, 1, (0, 0), 1), 6, 16),
            (axis(9, 3, 2, (1, 1), 1), axis(11, 3, 2, (1, 0), 1), 5, 7),
            (axis(8, 3, 2, (0, 1), 2), axis(7, 4, 3, (2, 1), 1), 17, 3),
            (axis(6, 1, 2, (0, 0), 1), axis(6, 1, 2, (0, 0), 1), 33, 9),
            (axis(5, 7, 1, (3, 3), 1), axis(5, 7, 1, (3, 3), 1), 2, 1),
        ];
        let value = |i: usize| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0;
        for (height, width, cin, cout) in geometries {
            let g = ConvGeometry { height, width, in_channels: cin, out_channels: cout, groups: 1 };
            let images = 2;
            let weight: Vec<f32> = (0..g.patch_len() * cout).map(|i| value(i + 3)).collect();
            let dy: Vec<f32> = (0..images * g.output_len()).map(value).collect();
            let mut want = vec![0.0f64; images * g.input_len()];
            for b in 0..images {
                for (oy, ox, ky, kx) in (0..height.output).flat_map(|oy| {
                    (0..width.output).flat_map(move |ox| {
                        (0..height.kernel)
                            .flat_map(move |ky| (0..width.kernel).map(move |kx| (oy, ox, ky, kx)))
                    })
                }) {
                    let (Some(iy), Some(ix)) = (height.tap(oy, ky), width.tap(ox, kx)) else { continue };
                    for i in 0..cin {
                        let dy = &dy[((b * height.output + oy) * width.output + ox) * cout..][..cout];
                        let w = &weight[((ky * width.kernel + kx) * cin + i) * cout..][..cout];
                        want[((b * height.input + iy) * width.input + ix) * cin + i] +=
                            dy.iter().zip(w).map(|(&d, &w)| d as f64 * w as f64).sum::<f64>();
                    }
                }
            }
            for kernels in Kernels::ALL {
                let Some(spread) = Spread::new(&weight, &g, kernels) else { continue };
                let start = |i: usize| i as f32 * 0.25;
                let mut dx: Vec<f32> = (0..want.len()).map(start).collect();
                spread.add(&dy, &mut dx);
                for (i, (&got, &want)) in dx.iter().zip(&want).enumerate() {
                    let want = want + start(i) as f64;
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{kernels:?} {g:?} value {i}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
