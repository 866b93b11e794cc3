//! The direct conv of up to 8 output channels in one group with AVX-512: a
//! vector holds the sums of two output pixels, `CO` channels each.
//!
//! The kernel of [`super`] keeps a vector of 16 pixels per channel, and
//! writes its sums out transposed into NHWC, value by value: for a few
//! channels that transpose cost more than the multiply-adds. Here lane `i`
//! of a vector is channel `i / 2` of pixel `i % 2` of a pair (lanes past
//! channel `CO` sum zeros): each tap multiplies the pair's two inputs (next
//! to each other in the panel, broadcast as one 64-bit value) by the tap's
//! weights, each twice. One permute then puts the vector in NHWC order, two
//! whole pixels, and the epilogue runs on it in registers.

use std::ops::Range;

use pulp::x86::V4;
use pulp::{Simd, bytemuck, f32x16};

use super::panel::Panel;
use super::{Conv, LANES, aligned};
use crate::gemm_narrow::{self, Finish};
use crate::im2col::{OutputRow, output_rows};
use crate::layers::Apply;
use cnn_shape::{Activation, ConvGeometry};

/// The most output channels this kernel takes: a vector's half.
const MAX_CHANNELS: usize = LANES / 2;

/// The pairs of pixels of one vector of [`LANES`] output pixels.
const PAIRS: usize = LANES / 2;

/// Whether `g` is convolved here: one group of up to 8 output channels.
pub fn takes(g: &ConvGeometry) -> bool {
    g.groups == 1 && (1..=MAX_CHANNELS).contains(&g.out_channels)
}

/// The weights laid out for [`tile`]: per tap, lane `i` the weight of
/// channel `i / 2` (within [`super::scratch_len`]'s).
fn weights_len(g: &ConvGeometry) -> usize {
    g.patch_len() * LANES
}

/// Output pixels `rows` of the images `x` into `out`, the epilogue
/// applied; `scratch` holds [`super::scratch_len`]. For a conv that
/// [`takes`].
pub fn tile(simd: V4, conv: Conv<'_>, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
    let tile = (x, rows, out, scratch);
    simd.vectorize(
        #[inline(always)]
        || match conv.g.out_channels {
            1 => channels::<1>(simd, conv, tile),
            2 => channels::<2>(simd, conv, tile),
            3 => channels::<3>(simd, conv, tile),
            4 => channels::<4>(simd, conv, tile),
            5 => channels::<5>(simd, conv, tile),
            6 => channels::<6>(simd, conv, tile),
            7 => channels::<7>(simd, conv, tile),
            _ => channels::<8>(simd, conv, tile),
        },
    )
}

/// [`tile`] for `CO` output channels.
#[inline(always)]
fn channels<const CO: usize>(
    simd: V4,
    conv: Conv<'_>,
    (x, rows, out, scratch): (&[f32], Range<usize>, &mut [f32], &mut [f32]),
) {
    let store = Store::<CO>::new(simd, conv);
    // The activation matched once here, not for every vector.
    let tile = (x, rows, &mut *out, scratch);
    match store.finish.activation {
        None => convolve(simd, conv, tile, &store, |v| store.finished(v, None)),
        Some(Activation::Relu) => {
            convolve(simd, conv, tile, &store, |v| store.finished(v, Some(Activation::Relu)))
        }
        Some(Activation::Relu6) => {
            convolve(simd, conv, tile, &store, |v| store.finished(v, Some(Activation::Relu6)))
        }
        Some(activation) => convolve(simd, conv, tile, &store, |v| store.finished(v, Some(activation))),
    }
    // An activation the epilogue leaves out (tanh, sigmoid, softmax): once
    // over the tile.
    if let Some(activation) = store.left {
        activation.apply(out, CO);
    }
}

/// [`tile`], each vector of sums stored through `finished`.
#[inline(always)]
fn convolve<const CO: usize>(
    simd: V4,
    conv: Conv<'_>,
    (x, rows, out, scratch): (&[f32], Range<usize>, &mut [f32], &mut [f32]),
    store: &Store<'_, CO>,
    finished: impl Fn(f32x16) -> f32x16 + Copy,
) {
    let g = conv.g;
    let layout = Panel::new(g);
    let (weights, rest) = scratch.split_at_mut(weights_len(g));
    for (tap, lanes) in conv.weight.chunks_exact(CO).zip(weights.chunks_exact_mut(LANES)) {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = tap.get(i / 2).copied().unwrap_or(0.0);
        }
    }
    let weights = weights.as_chunks::<LANES>().0;
    let panel = &mut aligned(rest)[..layout.len()];
    // The planes' padding, which no row overwrites (`Panel::load`).
    panel.fill(0.0);
    let mut held = None;
    let mut output_rows = output_rows(g, rows.clone()).peekable();
    while let Some(row) = output_rows.next() {
        let out_row = |row: &OutputRow| {
            let first = (row.pixel - rows.start) * CO;
            first..first + row.columns.len() * CO
        };
        let vectors = row.columns.start / LANES..row.columns.end.div_ceil(LANES);
        // A row of one vector is convolved with the next output row of its
        // image: twice the independent sums for each tap's weights.
        let next = |next: &OutputRow| {
            next.image == row.image && next.oy == row.oy + 1 && next.columns == row.columns
        };
        if let Some(next) = output_rows.next_if(|n| vectors.len() == 1 && next(n)) {
            let firsts = layout.load(x, g, row.image, (row.oy, 2), panel, &mut held);
            let sums = accumulate::<2>(simd, (firsts, vectors.start * LANES), panel, (conv.taps, weights));
            for (sums, row) in sums.iter().zip([&row, &next]) {
                store.row(sums, vectors.start, row.columns.clone(), &mut out[out_row(row)], finished);
            }
            continue;
        }
        let [first, _] = layout.load(x, g, row.image, (row.oy, 1), panel, &mut held);
        for v in vectors {
            let [sums] = accumulate::<1>(simd, ([first], v * LANES), panel, (conv.taps, weights));
            store.row(&sums, v, row.columns.clone(), &mut out[out_row(&row)], finished);
        }
    }
}

/// The sums of the `PAIRS` pairs of output pixels from column `column` of
/// each of `R` output rows, row `u`'s rows from `starts[u]` of the panel.
#[inline(always)]
fn accumulate<const R: usize>(
    simd: V4,
    (starts, column): ([usize; R], usize),
    panel: &[f32],
    (taps, weights): (&[usize], &[[f32; LANES]]),
) -> [[f32x16; PAIRS]; R] {
    let mut sums = [[simd.splat_f32s(0.0); PAIRS]; R];
    for (&tap, weight) in taps.iter().zip(weights) {
        let weight: f32x16 = gemm_narrow::load(simd, weight);
        for (sums, start) in sums.iter_mut().zip(starts) {
            // One bounds check for the row's pairs.
            let pairs = panel[start + column + tap..][..LANES].as_chunks::<2>().0;
            for (sum, &pair) in sums.iter_mut().zip(pairs) {
                // The pair as one 64-bit value, broadcast by the load.
                let pair: f32x16 = bytemuck::cast(simd.splat_f64s(bytemuck::cast(pair)));
                *sum = simd.mul_add_f32s(pair, weight, *sum);
            }
        }
    }
    sums
}

/// How the sums of a pair are finished and stored.
struct Store<'a, const CO: usize> {
    simd: V4,
    finish: Finish<'a>,
    /// The activation `finish` does not take, applied after.
    left: Option<Activation>,
    /// Each lane's scale and shift, in the order of the stored pixels:
    /// channel `i % CO`.
    scale: f32x16,
    shift: f32x16,
    /// Lane `i` (pixel `i / CO`, channel `i % CO`) from lane `i % CO * 2 +
    /// i / CO`: the pair pixel by pixel, NHWC.
    order: [i32; LANES],
    /// Lane `i` from lane `i + CO`: the second pixel's channels first.
    second: [i32; LANES],
}

impl<'a, const CO: usize> Store<'a, CO> {
    fn new(simd: V4, conv: Conv<'a>) -> Store<'a, CO> {
        let (finish, left) = conv.epilogue.finish();
        let lanes = |values: Option<&[f32]>, empty: f32| {
            let lanes: [f32; LANES] = std::array::from_fn(|i| values.map_or(empty, |v| v[i % CO]));
            gemm_narrow::load(simd, &lanes)
        };
        let (scale, shift) = (lanes(finish.scale, 1.0), lanes(finish.shift, 0.0));
        let order = std::array::from_fn(|i| (i % CO * 2 + i / CO % 2) as i32);
        let second = std::array::from_fn(|i| ((i + CO) % LANES) as i32);
        Store { simd, finish, left, scale, shift, order, second }
    }

    /// A vector of sums in NHWC order with the epilogue applied, as the
    /// GEMM kernel's: a multiply, then an add.
    #[inline(always)]
    fn finished(&self, sum: f32x16, activation: Option<Activation>) -> f32x16 {
        let simd = self.simd;
        let sum = if self.finish.scale.is_some() { simd.mul_f32s(sum, self.scale) } else { sum };
        let sum = if self.finish.shift.is_some() { simd.add_f32s(sum, self.shift) } else { sum };
        gemm_narrow::activate(simd, activation, sum)
    }

    /// The sums of vector `v` of an output row into the pixels of the row
    /// segment `columns` that it covers, `out_row` holding the segment,
    /// each through `finished`.
    #[inline(always)]
    fn row(
        &self,
        sums: &[f32x16; PAIRS],
        v: usize,
        columns: Range<usize>,
        out_row: &mut [f32],
        finished: impl Fn(f32x16) -> f32x16,
    ) {
        let simd = self.simd;
        let order = pulp::cast(self.order);
        for (j, &sum) in sums.iter().enumerate() {
            let first = v * LANES + 2 * j;
            let (lo, hi) = (first.max(columns.start), (first + 2).min(columns.end));
            if lo >= hi {
                continue;
            }
            let mut sum = simd.avx512f._mm512_permutexvar_ps(order, pulp::cast(sum));
            if lo > first {
                // The second pixel alone: its channels down to the first lanes.
                sum = simd.avx512f._mm512_permutexvar_ps(pulp::cast(self.second), sum);
            }
            let pixels = &mut out_row[(lo - columns.start) * CO..(hi - columns.start) * CO];
            store_first_lanes(simd, pixels, finished(pulp::cast(sum)));
        }
    }
}

/// The first `out.len()` lanes of `v` into `out`, a masked store: through
/// an array, the compiler may write the vector to the stack and read its
/// halves back, each read waiting for the write (W4 on two threads ran 25%
/// slower when it did).
#[inline(always)]
#[allow(unsafe_code)]
fn store_first_lanes(simd: V4, out: &mut [f32], v: f32x16) {
    assert!(out.len() <= LANES, "a pair is at most a vector");
    let mask = ((1u32 << out.len()) - 1) as u16;
    // SAFETY: AVX-512F is enabled (`simd`), and the mask's lanes are the
    // values of `out`, the only ones written.
    unsafe { simd.avx512f._mm512_mask_storeu_ps(out.as_mut_ptr(), mask, pulp::cast(v)) }
}
