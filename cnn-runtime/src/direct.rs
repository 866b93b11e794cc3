//! Direct convolution, for layers with few output channels per group.
//!
//! There im2col + GEMM is bound by copying, not multiplying: matrixmultiply's
//! widest kernel is 16 columns, so 6 or 8 output channels leave most of it
//! idle, and a patch of 25 values costs as much to copy twice (im2col, then
//! the GEMM's own packing) as to multiply.
//!
//! Here the kernel rows of an output row are copied once into a panel, one
//! plane per input channel and stride phase, so that the inputs of a tap for
//! consecutive output pixels are contiguous. A vector of 16 output pixels
//! then keeps the sums of its (up to 8) output channels in registers over all
//! taps, gets its epilogue there, and is written out transposed into NHWC.
//! The loops are plain Rust that the compiler vectorises to the CPU's width
//! (see [`crate::cpu`]); each sum runs over the taps in `(ky, kx, ci)` order
//! whatever the width.

use std::ops::Range;

use crate::cpu;
use crate::layers::{ConvGeometry, Epilogue};

/// The most output channels per group that take this path.
pub const MAX_CHANNELS: usize = 8;

/// Output pixels computed together: one AVX-512 vector.
const LANES: usize = 16;

/// Whether `g` is convolved here rather than by im2col + GEMM.
pub fn is_direct(g: &ConvGeometry) -> bool {
    g.out_channels / g.groups <= MAX_CHANNELS
}

/// The sizes of one output row's panel.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Values of one panel plane: the row's output columns in whole vectors,
    /// and the reach of the kernel past them.
    plane: usize,
}

impl Layout {
    fn new(g: &ConvGeometry) -> Layout {
        let w = g.width;
        let columns = w.output.div_ceil(LANES) * LANES;
        // Planes start on 64-byte lines, so that tap kx = 0 reads aligned vectors.
        Layout { plane: (columns + (w.kernel - 1) * w.dilation / w.stride).next_multiple_of(LANES) }
    }

    /// `KH * CIN * stride` planes.
    fn panel_len(&self, g: &ConvGeometry) -> usize {
        g.height.kernel * g.in_channels * g.width.stride * self.plane
    }
}

/// Scratch values one thread needs: each group's weights padded to
/// `MAX_CHANNELS` columns, up to a 64-byte line of padding, the panel.
pub fn scratch_len(g: &ConvGeometry) -> usize {
    let layout = Layout::new(g);
    MAX_CHANNELS * g.groups * g.patch_len() + LANES + layout.panel_len(g)
}

/// What a tile reads.
#[derive(Clone, Copy)]
pub struct Conv<'a> {
    pub g: &'a ConvGeometry,
    /// `[KH, KW, CIN/G, COUT]`.
    pub weight: &'a [f32],
    pub epilogue: &'a Epilogue,
}

/// Output pixels `rows` of the images `x` (all channels, `rows.len() * COUT`
/// values) into `out`, the epilogue applied; `scratch` holds [`scratch_len`].
pub fn direct_tile(conv: Conv<'_>, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
    let co = (conv.g.out_channels / conv.g.groups).div_ceil(2) * 2;
    cpu::vectorized(
        #[inline(always)]
        || match co {
            // Output channels rounded up to even: four kernels.
            ..=2 => tile::<2>(conv, x, rows, out, scratch),
            4 => tile::<4>(conv, x, rows, out, scratch),
            6 => tile::<6>(conv, x, rows, out, scratch),
            _ => tile::<8>(conv, x, rows, out, scratch),
        },
    )
}

/// The tile with `CO` output channels a group, padded with zero weights.
#[inline(always)]
fn tile<const CO: usize>(
    conv: Conv<'_>,
    x: &[f32],
    rows: Range<usize>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let Conv { g, weight, epilogue } = conv;
    let cout_g = g.out_channels / g.groups;
    let (h, w) = (g.height, g.width);
    let layout = Layout::new(g);
    let (weights, rest) = scratch.split_at_mut(g.groups * g.patch_len() * CO);
    for (group, padded) in weights.chunks_exact_mut(g.patch_len() * CO).enumerate() {
        pad_weights::<CO>(weight, g, group, padded);
    }
    let to_line = rest.as_ptr().align_offset(64).min(LANES);
    let panel = &mut rest[to_line..][..layout.panel_len(g)];
    let mut r = rows.start;
    while r < rows.end {
        // One output row of one image at a time: (b, oy, ox..ox + len).
        let (b, oy, ox) = (r / (h.output * w.output), (r / w.output) % h.output, r % w.output);
        let len = (w.output - ox).min(rows.end - r);
        fill_panel(x, g, layout, b, oy, panel);
        let out_row = &mut out[(r - rows.start) * g.out_channels..][..len * g.out_channels];
        for (group, weights) in weights.chunks_exact(g.patch_len() * CO).enumerate() {
            for v in ox / LANES..(ox + len).div_ceil(LANES) {
                let mut sums = accumulate::<CO>(g, layout, panel, weights, group, v);
                // The epilogue on the sums, channel by channel, in registers.
                for (o, sum) in sums[..cout_g].iter_mut().enumerate() {
                    epilogue.apply_to_channel(sum, group * cout_g + o);
                }
                // Columns lo..hi of this vector are pixels of the row segment.
                let (lo, hi) = (ox.max(v * LANES), (ox + len).min((v + 1) * LANES));
                let pixels = &mut out_row[(lo - ox) * g.out_channels..(hi - ox) * g.out_channels];
                store::<CO>(g, &sums, group, lo - v * LANES, pixels);
            }
        }
        epilogue.apply_across_channels(out_row, g.out_channels);
        r += len;
    }
}

/// Group `group`'s weights as `[patch, CO]`, the columns past `COUT/G` zero.
#[inline(always)]
fn pad_weights<const CO: usize>(weight: &[f32], g: &ConvGeometry, group: usize, padded: &mut [f32]) {
    let (cout, cout_g) = (g.out_channels, g.out_channels / g.groups);
    for (source, target) in weight.chunks_exact(cout).zip(padded.chunks_exact_mut(CO)) {
        target[..cout_g].copy_from_slice(&source[group * cout_g..][..cout_g]);
        target[cout_g..].fill(0.0);
    }
}

/// The kernel rows of output row `oy` of image `b`, as planes: value `i` of
/// plane `(ky, ci, phase)` is input channel `ci` at padded column
/// `i * stride + phase` of input row `oy * stride - pad + ky * dilation`,
/// zero where that is padding.
///
/// Not inlined into the vectorised tile: built for AVX2 or AVX-512 its
/// strided reads become gathers, which are slow, and slower still under the
/// microcode mitigation of Gather Data Sampling.
#[inline(never)]
fn fill_panel(x: &[f32], g: &ConvGeometry, layout: Layout, b: usize, oy: usize, panel: &mut [f32]) {
    let (h, w, cin) = (g.height, g.width, g.in_channels);
    let image = &x[b * g.input_len()..][..g.input_len()];
    let mut planes = panel.chunks_exact_mut(layout.plane);
    for ky in 0..h.kernel {
        let input_row = h.tap(oy, ky).map(|iy| &image[iy * w.input * cin..][..w.input * cin]);
        for ci in 0..cin {
            for phase in 0..w.stride {
                let plane = planes.next().expect("KH * CIN * stride planes");
                let Some(input_row) = input_row else {
                    plane.fill(0.0);
                    continue;
                };
                // Plane values lo..hi fall inside the input, from input column `first`.
                let lo = w.pad_before.saturating_sub(phase).div_ceil(w.stride);
                let hi = (w.pad_before + w.input).saturating_sub(phase).div_ceil(w.stride);
                let (lo, hi) = (lo.min(plane.len()), hi.min(plane.len()));
                plane[..lo].fill(0.0);
                if lo < hi {
                    let first = lo * w.stride + phase - w.pad_before;
                    let (inside, plane) = (&input_row[first * cin + ci..], &mut plane[lo..hi]);
                    if w.stride * cin == 1 {
                        plane.copy_from_slice(&inside[..plane.len()]);
                    } else {
                        plane
                            .iter_mut()
                            .zip(inside.iter().step_by(w.stride * cin))
                            .for_each(|(p, v)| *p = *v);
                    }
                }
                plane[hi.max(lo)..].fill(0.0);
            }
        }
    }
}

/// The sums over taps of weight times input for vector `v` of a row's
/// output columns and the `CO` (padded) output channels of group `group`.
#[inline(always)]
fn accumulate<const CO: usize>(
    g: &ConvGeometry,
    layout: Layout,
    panel: &[f32],
    weights: &[f32],
    group: usize,
    v: usize,
) -> [[f32; LANES]; CO] {
    let (w, cin) = (g.width, g.in_channels);
    let cin_g = cin / g.groups;
    let (taps, _) = weights.as_chunks::<CO>();
    let mut tap = taps.iter();
    // The CO sums stay in registers over all taps.
    let mut sums = [[0.0f32; LANES]; CO];
    // Tap kx reads padded column `ox * s + kx * d`: plane phase `kx * d % s`,
    // shifted by `kx * d / s`, kept as the loop goes rather than divided.
    for ky in 0..g.height.kernel {
        let (mut phase, mut shift) = (0, 0);
        for _kx in 0..w.kernel {
            let plane = (ky * cin + group * cin_g) * w.stride + phase;
            for ci in 0..cin_g {
                let at = (plane + ci * w.stride) * layout.plane + shift + v * LANES;
                let x: &[f32; LANES] = panel[at..at + LANES].try_into().expect("a vector");
                add_scaled::<CO>(&mut sums, tap.next().expect("KH * KW * CIN/G weight rows"), x);
            }
            phase += w.dilation;
            while phase >= w.stride {
                (phase, shift) = (phase - w.stride, shift + 1);
            }
        }
    }
    sums
}

/// `sums[o] += tap[o] * x` for the `CO` channels of one vector of pixels.
#[inline(always)]
fn add_scaled<const CO: usize>(sums: &mut [[f32; LANES]; CO], tap: &[f32; CO], x: &[f32; LANES]) {
    // Lanes outside, channels inside: the channel loop unrolls, and the
    // lanes become one vector per channel. The other way round, the
    // compiler vectorises across channels with gathers.
    for i in 0..LANES {
        for o in 0..CO {
            sums[o][i] += tap[o] * x[i];
        }
    }
}

/// Writes columns `first..` of the sums into `pixels` (NHWC, pixel after
/// pixel), as group `group`'s channels.
#[inline(always)]
fn store<const CO: usize>(
    g: &ConvGeometry,
    sums: &[[f32; LANES]; CO],
    group: usize,
    first: usize,
    pixels: &mut [f32],
) {
    let (cout, cout_g) = (g.out_channels, g.out_channels / g.groups);
    if cout == CO && first == 0 {
        // All channels of all the vector's pixels: a transpose of known size.
        if let Ok(block) = <&mut [[f32; CO]; LANES]>::try_from(pixels.as_chunks_mut::<CO>().0) {
            for (i, pixel) in block.iter_mut().enumerate() {
                *pixel = std::array::from_fn(|o| sums[o][i]);
            }
            return;
        }
    }
    for (i, pixel) in (first..LANES).zip(pixels.chunks_exact_mut(cout)) {
        for (o, value) in pixel[group * cout_g..][..cout_g].iter_mut().enumerate() {
            *value = sums[o][i];
        }
    }
}
