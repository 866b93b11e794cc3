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
    debug_assert_eq!(col.len(), rows.len() * patch);
    for (r, col_row) in rows.zip(col.chunks_exact_mut(patch)) {
        let ox = r % w.output;
        let oy = (r / w.output) % h.output;
        let b = r / (w.output * h.output);
        let image = &x[b * h.input * w.input * cin..][..h.input * w.input * cin];
        for (ky, kernel_row) in col_row.chunks_exact_mut(w.kernel * cin_g).enumerate() {
            let Some(iy) = h.tap(oy, ky) else {
                kernel_row.fill(0.0);
                continue;
            };
            for (kx, cell) in kernel_row.chunks_exact_mut(cin_g).enumerate() {
                match w.tap(ox, kx) {
                    Some(ix) => {
                        let at = (iy * w.input + ix) * cin + group * cin_g;
                        cell.copy_from_slice(&image[at..at + cin_g]);
                    }
                    None => cell.fill(0.0),
                }
            }
        }
    }
}
