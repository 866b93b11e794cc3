//! Packing of convolution input patches into the rows of a matrix.
//!
//! The input is NHWC. Row `r` of the im2col matrix is output pixel
//! `r = (b * out_h + oy) * out_w + ox`; its `kh * kw * cin_g` columns are the
//! patch in `(ky, kx, ci)` order, `ci` running over the channels of one group,
//! padding as zeros. That order is the row order of the weight matrix
//! `[KH, KW, CIN/G, COUT]`, so `col x weight` is the convolution.

use std::ops::Range;

use cnn_shape::{Axis, ConvGeometry};

/// Values `col` must hold past the panel: interior kernel rows are copied
/// in whole blocks of 8, the last one spilling past the row, into the next
/// one (written after it) or into this slack.
pub const SLACK: usize = 8;

/// The pixels of one output row of one image that a tile computes.
pub struct OutputRow {
    pub image: usize,
    pub oy: usize,
    pub columns: Range<usize>,
    /// The first pixel's index in the batch, `(image * OH + oy) * OW + columns.start`.
    pub pixel: usize,
}

/// The output pixels `pixels` of a batch (indices `(image * OH + oy) * OW + ox`),
/// output row by output row.
pub fn output_rows(g: &ConvGeometry, pixels: Range<usize>) -> impl Iterator<Item = OutputRow> + use<> {
    let (oh, ow) = (g.height.output, g.width.output);
    let mut pixel = pixels.start;
    std::iter::from_fn(move || {
        (pixel < pixels.end).then(|| {
            let (image, oy, ox) = (pixel / (oh * ow), pixel / ow % oh, pixel % ow);
            let len = (ow - ox).min(pixels.end - pixel);
            let row = OutputRow { image, oy, columns: ox..ox + len, pixel };
            pixel += len;
            row
        })
    })
}

/// Writes rows `rows` of group `group`'s im2col matrix into the start of
/// `col`, `rows.len() * kh * kw * cin_g` values; `col` holds `SLACK` more.
pub fn im2col_tile(x: &[f32], g: &ConvGeometry, group: usize, rows: Range<usize>, col: &mut [f32]) {
    // At the CPU's width the block copies are one or two vector moves, and
    // the short runs of patch_with_padding are inlined instead of memmove calls.
    crate::cpu::vectorized(
        #[inline(always)]
        || im2col_tile_at_width(x, g, group, rows, col),
    )
}

/// [`im2col_tile`], inlined into code built for the CPU's width.
#[inline(always)]
fn im2col_tile_at_width(x: &[f32], g: &ConvGeometry, group: usize, rows: Range<usize>, col: &mut [f32]) {
    let (h, w) = (g.height, g.width);
    let patch = g.patch_len();
    assert!(col.len() >= rows.len() * patch + SLACK, "im2col panel too short");
    let image_len = g.input_len();
    // Without groups or horizontal dilation a kernel row is one contiguous
    // run of the input, and inside the input it needs no padding.
    let contiguous = g.groups == 1 && w.dilation == 1;
    let (full_y, full_x) = (full_range(h), full_range(w));
    for row in output_rows(g, rows.clone()) {
        let (oy, ox, len) = (row.oy, row.columns.start, row.columns.len());
        let image = &x[row.image * image_len..][..image_len];
        let tile_row = row.pixel - rows.start;
        // Within the row's pixels: a tile may end before the first
        // interior pixel (a left padding of two or more).
        let interior = if contiguous && full_y.contains(&oy) {
            let start = ox.max(full_x.start).min(ox + len);
            start..(ox + len).min(full_x.end).max(start)
        } else {
            ox..ox
        };
        // Left to right: an interior copy may spill into the patch after it.
        let edge = |x_pos: usize, col: &mut [f32]| {
            let at = (tile_row + x_pos - ox) * patch;
            patch_with_padding(image, g, group, oy, x_pos, &mut col[at..at + patch]);
        };
        (ox..interior.start).for_each(|x_pos| edge(x_pos, col));
        if !interior.is_empty() {
            let at = (tile_row + interior.start - ox) * patch;
            interior_run(image, g, oy, interior.clone(), &mut col[at..]);
        }
        (interior.end..ox + len).for_each(|x_pos| edge(x_pos, col));
    }
}

/// The patches of output pixels `oy, xs` whose taps all fall inside the
/// input (no groups, no horizontal dilation), one after another in `col`.
#[inline(always)]
fn interior_run(image: &[f32], g: &ConvGeometry, oy: usize, xs: Range<usize>, col: &mut [f32]) {
    let (h, w, cin) = (g.height, g.width, g.in_channels);
    let (patch, row_len) = (g.patch_len(), w.kernel * cin);
    let blocks = row_len.div_ceil(8) * 8;
    let (row_step, x_step) = (h.dilation * w.input * cin, w.stride * cin);
    let base = (h.start(oy) as usize * w.input + w.start(xs.start) as usize) * cin;
    // Pixel by pixel, kernel row by kernel row: each block's spill lands
    // where the next copy writes.
    for i in 0..xs.len() {
        for ky in 0..h.kernel {
            let (from, to) = (base + ky * row_step + i * x_step, i * patch + ky * row_len);
            if from + blocks <= image.len() && to + blocks <= col.len() {
                let (source, target) = (&image[from..from + blocks], &mut col[to..to + blocks]);
                for (t, s) in target.chunks_exact_mut(8).zip(source.chunks_exact(8)) {
                    t.copy_from_slice(s);
                }
            } else {
                col[to..to + row_len].copy_from_slice(&image[from..from + row_len]);
            }
        }
    }
}

/// The patch of output pixel `(oy, ox)`, padding as zeros.
#[inline(always)]
fn patch_with_padding(
    image: &[f32],
    g: &ConvGeometry,
    group: usize,
    oy: usize,
    ox: usize,
    patch: &mut [f32],
) {
    let (h, w, cin) = (g.height, g.width, g.in_channels);
    let cin_g = cin / g.groups;
    let (lo, hi) = inside_taps(w, ox);
    for (ky, kernel_row) in patch.chunks_exact_mut(w.kernel * cin_g).enumerate() {
        let Some(iy) = h.tap(oy, ky) else {
            kernel_row.fill(0.0);
            continue;
        };
        let input_row = &image[iy * w.input * cin..][..w.input * cin];
        if g.groups == 1 && w.dilation == 1 {
            // Taps lo..hi fall inside the input, one run of it.
            kernel_row[..lo * cin].fill(0.0);
            kernel_row[hi * cin..].fill(0.0);
            if lo < hi {
                let at = (w.start(ox) + lo as isize) as usize * cin;
                kernel_row[lo * cin..hi * cin].copy_from_slice(&input_row[at..at + (hi - lo) * cin]);
            }
            continue;
        }
        for (kx, cell) in kernel_row.chunks_exact_mut(cin_g).enumerate() {
            match w.tap(ox, kx) {
                Some(ix) => cell.copy_from_slice(&input_row[ix * cin + group * cin_g..][..cin_g]),
                None => cell.fill(0.0),
            }
        }
    }
}

/// The taps `lo..hi` of window `o` that fall inside the input, without dilation.
pub(crate) fn inside_taps(axis: Axis, o: usize) -> (usize, usize) {
    let start = axis.start(o);
    let lo = (-start).clamp(0, axis.kernel as isize) as usize;
    let hi = (axis.input as isize - start).clamp(lo as isize, axis.kernel as isize) as usize;
    (lo, hi)
}

/// The output positions along `axis` whose taps all fall inside the input.
pub(crate) fn full_range(axis: Axis) -> Range<usize> {
    let reach = axis.dilation * (axis.kernel - 1);
    let first = axis.pad_before.div_ceil(axis.stride);
    // The last window start `o * s - pb` with `o * s - pb + reach < n`.
    let past = match (axis.input + axis.pad_before).checked_sub(reach + 1) {
        Some(last) => (last / axis.stride + 1).min(axis.output),
        None => 0,
    };
    first.min(past)..past
}

/// The adjoint of [`im2col_tile`]: adds each value of the panel `col`
/// (rows `rows` of group `group`) to the input cell it was copied from.
pub fn col2im_tile(col: &[f32], g: &ConvGeometry, group: usize, rows: Range<usize>, dx: &mut [f32]) {
    let (h, w) = (g.height, g.width);
    let (cin, cin_g, patch, image_len) =
        (g.in_channels, g.in_channels / g.groups, g.patch_len(), g.input_len());
    let contiguous = g.groups == 1 && w.dilation == 1;
    for (r, col_row) in rows.zip(col.chunks_exact(patch)) {
        let (b, oy, ox) = (r / (h.output * w.output), (r / w.output) % h.output, r % w.output);
        let image = &mut dx[b * image_len..][..image_len];
        let (lo, hi) = inside_taps(w, ox);
        for (ky, kernel_row) in col_row.chunks_exact(w.kernel * cin_g).enumerate() {
            let Some(iy) = h.tap(oy, ky) else { continue };
            let input_row = &mut image[iy * w.input * cin..][..w.input * cin];
            if contiguous {
                if lo < hi {
                    let at = (w.start(ox) + lo as isize) as usize * cin;
                    let run = &mut input_row[at..at + (hi - lo) * cin];
                    run.iter_mut().zip(&kernel_row[lo * cin..hi * cin]).for_each(|(d, v)| *d += v);
                }
                continue;
            }
            for (kx, cell) in kernel_row.chunks_exact(cin_g).enumerate() {
                if let Some(ix) = w.tap(ox, kx) {
                    let at = ix * cin + group * cin_g;
                    input_row[at..at + cin_g].iter_mut().zip(cell).for_each(|(d, v)| *d += v);
                }
            }
        }
    }
}
