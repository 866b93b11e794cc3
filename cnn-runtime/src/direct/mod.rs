//! Direct convolution, for layers with at most 8 output channels a group.
//!
//! There im2col + GEMM is bound by copying, not multiplying: matrixmultiply's
//! widest kernel is 16 columns, so 6 or 8 output channels leave most of it
//! idle, and a patch of 25 values costs as much to copy twice (im2col, then
//! the GEMM's own packing) as to multiply.
//!
//! Here the inputs of a tap for consecutive output pixels are one vector
//! of the output row's [`Panel`] (16 pixels with AVX-512, 8 with AVX2). Such
//! a vector of pixels keeps the sums of its group's output channels (padded
//! to `CO`) in `CO` registers over all taps, gets its epilogue there, and is
//! written out transposed into NHWC. Two such vectors go at a time: along
//! the row, or, where the row is one vector, one of the next output row.
//! The sums are pulp's vectors of the CPU's width (see [`crate::cpu`]); a
//! multiply-add is fused where the CPU has the instruction. Each sum runs
//! over the taps in `(ky, kx, ci)` order, so the result does not depend on
//! how the work is split between threads.
//!
//! With AVX-512 and one group of up to 8 output channels, [`pairs`] takes
//! the tile instead: a vector there holds two pixels' channels, already in
//! NHWC order, where the transpose of 16 pixels' sums cost more than their
//! multiply-adds.
//!
//! With more output channels the GEMM's kernel is full and wins: a kernel
//! with channels across the lanes and pixels in registers was tried, and
//! came out at 40-60% of im2col + GEMM on W1, W2 and W4's convs.

#[cfg(target_arch = "x86_64")]
mod pairs;
mod panel;

use std::ops::Range;

use pulp::{Simd, WithSimd};

use crate::cpu::Kernels;
use cnn_shape::ConvGeometry;

use crate::gemm_narrow;
use crate::im2col::OutputRow;
use crate::layers::Epilogue;
use panel::Panel;

/// The pixels a panel's rows are rounded up to: a 64-byte line, one AVX-512
/// vector, two AVX2 vectors.
const LANES: usize = 16;

/// The most output channels a group that take this path.
const MAX_CHANNELS: usize = 8;

/// Whether `g` is convolved here rather than by im2col + GEMM: by every
/// kernel variant but the portable one. Without AVX-512, a strided conv
/// runs faster through the GEMM kernel (measured on W4's `conv 8 k5 s2`, a
/// quarter of the network's time), whose 6 rows x 2 vectors of sums fill
/// the 16 registers better than 8 channels here.
pub fn is_direct(g: &ConvGeometry, kernels: Kernels) -> bool {
    let unit_stride = g.height.stride == 1 && g.width.stride == 1;
    kernels != Kernels::Portable
        && (crate::cpu::has_avx512(kernels) || unit_stride)
        && g.out_channels / g.groups <= MAX_CHANNELS
}

/// What a tile reads.
#[derive(Clone, Copy)]
pub struct Conv<'a> {
    pub g: &'a ConvGeometry,
    /// `[KH, KW, CIN/G, COUT]`.
    pub weight: &'a [f32],
    pub epilogue: &'a Epilogue,
    pub kernels: Kernels,
    /// Where each tap of a group is read, from [`tap_offsets`].
    pub taps: &'a [usize],
}

/// Into `taps`, where each tap of a group of `g` is read in the panel from
/// where its output row starts, for [`Conv`]: worked out once for all the
/// tiles of a pass.
pub fn tap_offsets(g: &ConvGeometry, taps: &mut Vec<usize>) {
    Panel::new(g).taps(g, taps)
}

/// Scratch values one thread needs: each group's weights padded to
/// `MAX_CHANNELS` columns (one group takes twice that with AVX-512, a
/// weight for each of two pixels), up to a 64-byte line of padding, the
/// panel.
pub fn scratch_len(g: &ConvGeometry) -> usize {
    let weights = g.patch_len() * (g.groups * MAX_CHANNELS).max(2 * MAX_CHANNELS);
    weights + LANES + Panel::new(g).len()
}

/// Output pixels `rows` of the images `x` (all channels, `rows.len() * COUT`
/// values) into `out`, the epilogue applied; `scratch` holds [`scratch_len`].
pub fn direct_tile(conv: Conv<'_>, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let (pulp::Arch::V4(simd), true) = (conv.kernels.arch(), pairs::takes(conv.g)) {
        return pairs::tile(simd, conv, x, rows, out, scratch);
    }
    conv.kernels.arch().dispatch(Tile { conv, x, rows, out, scratch })
}

/// A call of [`direct_tile`], run with the CPU's vectors.
struct Tile<'a> {
    conv: Conv<'a>,
    x: &'a [f32],
    rows: Range<usize>,
    out: &'a mut [f32],
    scratch: &'a mut [f32],
}

impl WithSimd for Tile<'_> {
    type Output = ();

    /// Output channels rounded up to even. A vector of `L` pixels (the
    /// CPU's width) keeps the sums of its `CO` channels in `CO` registers,
    /// `V` such vectors at a time: as many as the registers hold (32 with
    /// AVX-512, else 16) besides an input vector and a broadcast weight.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        macro_rules! at_width {
            ($l:literal, $v8:literal) => {
                match self.conv.g.out_channels / self.conv.g.groups {
                    ..=2 => tile::<S, 2, 2, $l>(simd, self),
                    3..=4 => tile::<S, 4, 2, $l>(simd, self),
                    5..=6 => tile::<S, 6, 2, $l>(simd, self),
                    _ => tile::<S, 8, $v8, $l>(simd, self),
                }
            };
        }
        match size_of::<S::f32s>() / size_of::<f32>() {
            16 => at_width!(16, 2),
            8 => at_width!(8, 1),
            4 => at_width!(4, 1),
            _ => at_width!(1, 2),
        }
    }
}

/// The tile with each group's channels padded to `CO`, `V` vectors of `L`
/// pixels of a row at a time while the row has them.
#[inline(always)]
fn tile<S: Simd, const CO: usize, const V: usize, const L: usize>(simd: S, tile: Tile<'_>) {
    let Tile { conv, x, rows, out, scratch } = tile;
    let Conv { g, weight, epilogue, .. } = conv;
    let cout = g.out_channels;
    let layout = Panel::new(g);
    let (weights, rest) = scratch.split_at_mut(g.groups * g.patch_len() * CO);
    pad_weights::<CO>(weight, g, weights);
    let panel = &mut aligned(rest)[..layout.len()];
    // The planes' padding, which no row overwrites (`Panel::load`).
    panel.fill(0.0);
    let mut held = None;
    // Written by each call of `accumulate`, here rather than returned: the
    // compiler copies arrays of this size with calls to memcpy.
    let mut sums = [[[0.0; L]; CO]; V];
    let mut output_rows = crate::im2col::output_rows(g, rows.clone()).peekable();
    while let Some(row) = output_rows.next() {
        let (ox, len) = (row.columns.start, row.columns.len());
        let (v, end) = (ox / L, (ox + len).div_ceil(L));
        let out_row =
            |row: &OutputRow| (row.pixel - rows.start) * cout..(row.pixel - rows.start + len) * cout;
        // A row of one vector is convolved with the next output row of its
        // image, a vector each: the sums of one vector alone wait on each
        // other, and each tap's loads and addresses serve half as many
        // multiply-adds.
        let pair = (V == 2 && end - v == 1).then(|| {
            let next = |next: &OutputRow| {
                next.image == row.image && next.oy == row.oy + 1 && next.columns == row.columns
            };
            output_rows.next_if(next)
        });
        if let Some(Some(next)) = pair {
            let firsts = layout.load(x, g, row.image, (row.oy, 2), panel, &mut held);
            let (first_row, next_row) = (out_row(&row), out_row(&next));
            for (group, weights) in weights.chunks_exact(g.patch_len() * CO).enumerate() {
                let at = (firsts, layout.group(g, group) + v * L);
                let two: &mut [_; 2] = (&mut sums[..2]).try_into().expect("V is 2");
                accumulate::<S, CO, 2, L, 2>(simd, at, panel, (conv.taps, weights), two);
                for (sums, out_row) in two.iter_mut().zip([first_row.clone(), next_row.clone()]) {
                    finish::<CO, L>(conv, group, v, sums, row.columns.clone(), &mut out[out_row]);
                }
            }
            epilogue.apply_across_channels(&mut out[first_row.start..next_row.end], cout);
            continue;
        }
        let [first, _] = layout.load(x, g, row.image, (row.oy, 1), panel, &mut held);
        let out_row = &mut out[out_row(&row)];
        for (group, weights) in weights.chunks_exact(g.patch_len() * CO).enumerate() {
            let mut v = v;
            while v + V <= end {
                let at = ([first], layout.group(g, group) + v * L);
                accumulate::<S, CO, V, L, 1>(simd, at, panel, (conv.taps, weights), &mut sums);
                for (u, sums) in sums.iter_mut().enumerate() {
                    finish::<CO, L>(conv, group, v + u, sums, ox..ox + len, out_row);
                }
                v += V;
            }
            for v in v..end {
                let at = ([first], layout.group(g, group) + v * L);
                let one: &mut [_; 1] = (&mut sums[..1]).try_into().expect("one vector");
                accumulate::<S, CO, 1, L, 1>(simd, at, panel, (conv.taps, weights), one);
                finish::<CO, L>(conv, group, v, &mut one[0], ox..ox + len, out_row);
            }
        }
        epilogue.apply_across_channels(out_row, cout);
    }
}

/// Vector `v` of a row's sums for group `group`: the epilogue applied,
/// channel by channel in registers, and stored into the pixels of the row
/// segment `columns` that it covers, `out_row` holding the segment.
#[inline(always)]
fn finish<const CO: usize, const L: usize>(
    conv: Conv<'_>,
    group: usize,
    v: usize,
    sums: &mut [[f32; L]; CO],
    columns: Range<usize>,
    out_row: &mut [f32],
) {
    let (cout, cout_g) = (conv.g.out_channels, conv.g.out_channels / conv.g.groups);
    conv.epilogue.apply_to_channels(&mut sums[..cout_g], group * cout_g);
    let (lo, hi) = (columns.start.max(v * L), columns.end.min((v + 1) * L));
    let pixels = &mut out_row[(lo - columns.start) * cout..(hi - columns.start) * cout];
    store::<CO, L>(cout, sums, group * cout_g..(group + 1) * cout_g, lo - v * L, pixels);
}

/// Each group's weights as `[patch, CO]`, the columns past its channels
/// zero, group after group.
#[inline(always)]
fn pad_weights<const CO: usize>(weight: &[f32], g: &ConvGeometry, padded: &mut [f32]) {
    let (cout, cout_g) = (g.out_channels, g.out_channels / g.groups);
    for (group, padded) in padded.chunks_exact_mut(g.patch_len() * CO).enumerate() {
        for (source, target) in weight.chunks_exact(cout).zip(padded.chunks_exact_mut(CO)) {
            target[..cout_g].copy_from_slice(&source[group * cout_g..][..cout_g]);
            target[cout_g..].fill(0.0);
        }
    }
}

/// The start of `values` moved to a 64-byte line: vectors that straddle two
/// lines cost double.
fn aligned(values: &mut [f32]) -> &mut [f32] {
    let to_line = values.as_ptr().align_offset(64).min(LANES);
    &mut values[to_line..]
}

/// The sums over taps of weight times input for `V` vectors of `L` output
/// pixels from column `column` of the planes of a group (from where they
/// start in a slot) and its `CO` (padded) output channels: with `R` = 1,
/// the vectors one after another along the output row whose rows start
/// at `starts[0]`; with `R` = `V`, vector `u` of the output row whose rows
/// start at `starts[u]`.
#[inline(always)]
fn accumulate<S: Simd, const CO: usize, const V: usize, const L: usize, const R: usize>(
    simd: S,
    (starts, column): ([usize; R], usize),
    panel: &[f32],
    (taps, weights): (&[usize], &[f32]),
    out: &mut [[[f32; L]; CO]; V],
) {
    // The V * CO sums stay in registers over all taps: vectors of pulp's,
    // not arrays the compiler may vectorise along the channels instead,
    // with a gather and a scatter of the sums for every multiply-add.
    let mut sums = [[simd.splat_f32s(0.0); CO]; V];
    for (&tap, weights) in taps.iter().zip(weights.as_chunks::<CO>().0) {
        let mut x = [simd.splat_f32s(0.0); V];
        if R == 1 {
            // One bounds check for all V.
            let row = panel[starts[0] + column + tap..][..V * L].as_chunks::<L>().0;
            for (x, values) in x.iter_mut().zip(row) {
                *x = gemm_narrow::load(simd, values);
            }
        } else {
            for (x, start) in x.iter_mut().zip(starts) {
                *x = gemm_narrow::load(simd, &panel[start + column + tap..][..L]);
            }
        }
        // Channel by channel, a weight broadcast once for all `V`
        // vectors, so that one broadcast is live at a time beside the
        // sums and inputs.
        for (o, &weight) in weights.iter().enumerate() {
            let weight = simd.splat_f32s(weight);
            for (sums, x) in sums.iter_mut().zip(x) {
                // Fused where the CPU has the instruction.
                sums[o] = simd.mul_add_e_f32s(weight, x, sums[o]);
            }
        }
    }
    for (out, sums) in out.iter_mut().zip(sums) {
        for (out, sum) in out.iter_mut().zip(sums) {
            gemm_narrow::store(simd, out, sum);
        }
    }
}

/// Writes columns `first..` of the sums into `pixels` (NHWC, pixel after
/// pixel, `cout` channels each), as output channels `channels`.
#[inline(always)]
fn store<const CO: usize, const L: usize>(
    cout: usize,
    sums: &[[f32; L]; CO],
    channels: Range<usize>,
    first: usize,
    pixels: &mut [f32],
) {
    // Transposed whole, a transpose of known size; then copied pixel by
    // pixel, whole if they hold all of the output's channels.
    // In loops: `from_fn` may not be inlined into the vectorised tile.
    let mut block = [[0.0; CO]; L];
    for (i, pixel) in block.iter_mut().enumerate() {
        for (value, sums) in pixel.iter_mut().zip(sums) {
            *value = sums[i];
        }
    }
    let block = &block[first..];
    if channels.len() == cout && cout == CO {
        // Pixel by pixel, copies of known size: no call to memcpy.
        for (pixel, values) in pixels.as_chunks_mut::<CO>().0.iter_mut().zip(block) {
            *pixel = *values;
        }
    } else {
        for (pixel, values) in pixels.chunks_exact_mut(cout).zip(block) {
            pixel[channels.clone()].copy_from_slice(&values[..channels.len()]);
        }
    }
}
