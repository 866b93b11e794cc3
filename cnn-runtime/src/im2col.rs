//! Packing of convolution input patches into the rows of a matrix.
//!
//! The input is NHWC. Row `r` of the im2col matrix is output pixel
//! `r = (b * out_h + oy) * out_w + ox`; its `kh * kw * cin_g` columns are the
//! patch in `(ky, kx, ci)` order, `ci` running over the channels of one group,
//! padding as zeros. That order is the row order of the weight matrix
//! `[KH, KW, CIN/G, COUT]`, so `col x weight` is the convolution.

use std::ops::Range;

use crate::layers::ConvGeometry;

/// Writes rows `rows` of group `group`'s im2col matrix into `col`,
/// `rows.len() * kh * kw * cin_g` values.
pub fn im2col_tile(x: &[f32], g: &ConvGeometry, group: usize, rows: Range<usize>, col: &mut [f32]) {
    let (h, w) = (g.height, g.width);
    let cin = g.in_channels;
    let cin_g = cin / g.groups;
    let patch = h.kernel * w.kernel * cin_g;
    let image_len = h.input * w.input * cin;
    debug_assert_eq!(col.len(), rows.len() * patch);
    // Without groups or horizontal dilation, a kernel row's cells are one
    // contiguous run of the input: one copy instead of one per cell.
    let contiguous = g.groups == 1 && w.dilation == 1;
    for (r, col_row) in rows.zip(col.chunks_exact_mut(patch)) {
        let ox = r % w.output;
        let oy = (r / w.output) % h.output;
        let b = r / (w.output * h.output);
        let image = &x[b * image_len..][..image_len];
        for (ky, kernel_row) in col_row.chunks_exact_mut(w.kernel * cin_g).enumerate() {
            let Some(iy) = h.tap(oy, ky) else {
                kernel_row.fill(0.0);
                continue;
            };
            let input_row = &image[iy * w.input * cin..][..w.input * cin];
            if contiguous {
                // Taps kx in lo..hi fall inside the input.
                let start = w.start(ox);
                let lo = (-start).clamp(0, w.kernel as isize) as usize;
                let hi = (w.input as isize - start).clamp(lo as isize, w.kernel as isize) as usize;
                kernel_row[..lo * cin].fill(0.0);
                kernel_row[hi * cin..].fill(0.0);
                if lo < hi {
                    let at = (start + lo as isize) as usize * cin;
                    kernel_row[lo * cin..hi * cin].copy_from_slice(&input_row[at..at + (hi - lo) * cin]);
                }
            } else {
                for (kx, cell) in kernel_row.chunks_exact_mut(cin_g).enumerate() {
                    match w.tap(ox, kx) {
                        Some(ix) => cell.copy_from_slice(&input_row[ix * cin + group * cin_g..][..cin_g]),
                        None => cell.fill(0.0),
                    }
                }
            }
        }
    }
}
