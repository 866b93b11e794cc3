//! The backward pass of a convolution: the weight gradient through the
//! forward pass's GEMM kernel as `dw = col^T dy`, `col^T` read from the
//! (padded) input in place where the forward reads its patches so, else
//! from im2col tiles; the input gradient as a convolution of `dy` at
//! stride 1 with `same` padding, else each pixel's gradient spread over its
//! window in place ([`crate::spread`]), else `dcol = dy W^T` then col2im.

use cnn_shape::{Axis, ConvGeometry};
use ndarray::Array4;
use rayon::prelude::*;

use super::{Conv2d, Tiling, pad, padded_geometry};
use crate::cpu::Kernels;
use crate::direct;
use crate::gemm::{MatMut, MatRef};
use crate::gemm_narrow::{self, Finish};
use crate::im2col::{SLACK, col2im_tile, im2col_tile};
use crate::layers::dense::sum_rows;
use crate::layers::{Destination, Epilogue, tensor};
use crate::spread::Spread;
use crate::workspace::with_kept_scratch;

impl Conv2d {
    /// The gradients of a batch, given its input `x` (and the images
    /// padded by [`pad_input`](Self::pad_input), if kept) and the gradient
    /// `dy` of the output: `dw` (weight layout) and `db` are overwritten,
    /// `dx` (if wanted) too. Images are taken in fixed parts whose sums are
    /// added in order, so the result does not depend on the thread count.
    pub(crate) fn backward(
        &self,
        (x, kept): (&[f32], Option<&[f32]>),
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: Option<&mut [f32]>,
    ) {
        const IMAGES_PER_PART: usize = 4;
        let g = self.geometry;
        let n = x.len() / g.input_len().max(1);
        let (patch, cout) = (g.patch_len(), g.out_channels);
        assert!(dy.len() == n * g.output_len() && dw.len() == patch * cout, "conv backward lengths");
        // Where `dx` is a convolution of `dy`, the whole batch's at once.
        let mut dx = dx;
        if let Some(conv) = dx.as_ref().and_then(|_| self.input_gradient_conv()) {
            let dx = dx.take().expect("dx is wanted");
            let (epilogue, whole) = (Epilogue::default(), Destination::Whole);
            with_kept_scratch(|scratch| {
                conv.run(dy, dx, scratch, (&epilogue, None), Kernels::Fastest, whole)
            });
        }
        // Else each pixel's gradient spread over its window where the
        // kernel runs, else the weight as `[COUT, KH*KW*CIN/G]`, the B of
        // `dcol = dy W^T`.
        let weight = tensor::values(&self.weight);
        let spread = dx.as_ref().and_then(|_| Spread::new(weight, &g, Kernels::Fastest));
        let by_dcol = dx.is_some() && spread.is_none();
        let mut weight_t = vec![0.0; if by_dcol { cout * patch } else { 0 }];
        if by_dcol {
            transpose(weight, cout, &mut weight_t);
        }
        // Where the taps are read in place, the images padded once.
        let mut padded = with_kept_scratch(Vec::pop).unwrap_or_default();
        let in_place = gemm_narrow::reads_patches(&g, Kernels::Fastest).then(|| match kept {
            Some(kept) => (kept, padded_geometry(&g)),
            None => pad(x, &g, &mut padded),
        });
        let parts = n.div_ceil(IMAGES_PER_PART);
        // Each part's `dw`, then its `db`.
        let part_len = patch * cout + cout;
        let mut partials = vec![0.0f32; parts * part_len];
        let mut dx_parts: Vec<&mut [f32]> = match dx {
            Some(dx) => {
                dx.fill(0.0);
                dx.chunks_mut(IMAGES_PER_PART * g.input_len()).collect()
            }
            None => Vec::new(),
        };
        let part = |scratch: &mut Scratch, p: usize, partial: &mut [f32], mut dx: Option<&mut [f32]>| {
            let images = p * IMAGES_PER_PART..((p + 1) * IMAGES_PER_PART).min(n);
            let x = &x[images.start * g.input_len()..images.end * g.input_len()];
            let dy = &dy[images.start * g.output_len()..images.end * g.output_len()];
            let (dw, db) = partial.split_at_mut(patch * cout);
            if let Some(spread) = &spread {
                spread.add(dy, dx.take().expect("dx is wanted"));
            }
            match &in_place {
                None => self.backward_part(x, dy, &weight_t, dx, Some(dw), scratch),
                // dw[ky, kx, i, o] = sum over (oy, ox) of x[oy + ky, ox + kx, i] dy[oy, ox, o]
                // (at stride 1), image by image.
                Some((padded, unpadded)) => {
                    let len = unpadded.input_len();
                    for image in images.clone() {
                        let x = &padded[image * len..(image + 1) * len];
                        // The image's gradient and the part's after it.
                        let dy = &dy[(image - images.start) * g.output_len()..];
                        for (x, g, dy) in row_bands(x, unpadded, dy) {
                            let b = MatRef::row_major(dy, g.height.output * g.width.output, cout);
                            let c = MatMut::row_major(dw, patch, cout);
                            gemm_narrow::multiply_taps(x, &g, b, c, Finish::ACCUMULATE, Kernels::Fastest);
                        }
                    }
                    if dx.is_some() {
                        self.backward_part(x, dy, &weight_t, dx, None, scratch);
                    }
                }
            }
            sum_rows(dy, db);
        };
        let work = partials.par_chunks_mut(part_len).enumerate();
        if dx_parts.is_empty() {
            work.for_each_init(Scratch::default, |scratch, (p, partial)| part(scratch, p, partial, None));
        } else {
            work.zip(dx_parts.par_iter_mut())
                .for_each_init(Scratch::default, |scratch, ((p, partial), dx)| {
                    part(scratch, p, partial, Some(dx))
                });
        }
        let mut sum = vec![0.0; part_len];
        for partial in partials.chunks_exact(part_len) {
            sum.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
        }
        dw.copy_from_slice(&sum[..patch * cout]);
        if let Some(db) = db {
            db.copy_from_slice(&sum[patch * cout..]);
        }
        with_kept_scratch(|kept| kept.push(padded));
    }

    /// `dw += (dy^T col)^T` (if wanted) and `dx = col2im(dy W^T)` over some
    /// images, tile by tile, through the forward pass's GEMM kernel: `dy^T`
    /// is copied per tile (it is narrow), `col` read as it is.
    fn backward_part(
        &self,
        x: &[f32],
        dy: &[f32],
        weight_t: &[f32],
        mut dx: Option<&mut [f32]>,
        dw: Option<&mut [f32]>,
        scratch: &mut Scratch,
    ) {
        let g = &self.geometry;
        let (patch, cout) = (g.patch_len(), g.out_channels);
        let cout_g = cout / g.groups;
        let rows = dy.len() / cout;
        let tile_rows = g.tile_rows().min(rows.max(1));
        let Scratch { col, dcol, dy_t, dw_t } = scratch;
        col.resize(tile_rows * patch + SLACK, 0.0);
        dcol.resize(tile_rows * patch, 0.0);
        dy_t.resize(tile_rows * cout, 0.0);
        dw_t.clear();
        dw_t.resize(if dw.is_some() { cout * patch } else { 0 }, 0.0);
        let kernels = Kernels::Fastest;
        for start in (0..rows).step_by(tile_rows) {
            let end = (start + tile_rows).min(rows);
            let len = end - start;
            let dy_tile = &dy[start * cout..end * cout];
            if dw.is_some() {
                transpose(dy_tile, cout, &mut dy_t[..len * cout]);
            }
            for group in 0..g.groups {
                if dw.is_some() {
                    im2col_tile(x, g, group, start..end, &mut col[..len * patch + SLACK]);
                    let dy_t_g = MatRef::row_major(&dy_t[group * cout_g * len..], cout_g, len);
                    let col_rows = MatRef::row_major(&col[..len * patch], len, patch);
                    let dw_t_g = MatMut::row_major(&mut dw_t[group * cout_g * patch..], cout_g, patch);
                    gemm_narrow::multiply(dy_t_g, col_rows, dw_t_g, Finish::ACCUMULATE, kernels);
                }
                if let Some(dx) = dx.as_deref_mut() {
                    let dy_g = MatRef::block(&dy_tile[group * cout_g..], len, cout_g, cout);
                    let w_t = MatRef::row_major(&weight_t[group * cout_g * patch..], cout_g, patch);
                    let dcol_tile = MatMut::row_major(&mut dcol[..len * patch], len, patch);
                    gemm_narrow::multiply(dy_g, w_t, dcol_tile, Finish::default(), kernels);
                    col2im_tile(&dcol[..len * patch], g, group, start..end, dx);
                }
            }
        }
        if let Some(dw) = dw {
            // dw^T is `[COUT, patch]`; dw, in the weight's layout, its transpose.
            for (o, row) in dw_t.chunks_exact(patch).enumerate() {
                row.iter().enumerate().for_each(|(k, v)| dw[k * cout + o] += v);
            }
        }
    }

    /// The convolution whose forward pass over `dy` is this one's input
    /// gradient, where there is one: at stride 1, without dilation or
    /// groups, `dx[iy, ix, i]` sums `dy[iy + pt - ky, ix + pl - kx, o] *
    /// w[ky, kx, i, o]`, a convolution of `dy` padded by `k - 1 - pad` on
    /// each side with the kernel turned round and its channels swapped. Its
    /// patches are read in place, where `dy W^T` would write and `col2im`
    /// read a tile `KH*KW*CIN` wide for every output pixel.
    fn input_gradient_conv(&self) -> Option<Conv2d> {
        let axis = |a: Axis| {
            let fits = slides_by_one(&a) && a.pad_before < a.kernel && a.pad_after < a.kernel;
            fits.then_some(Axis {
                input: a.output,
                pad_before: a.kernel - 1 - a.pad_before,
                pad_after: a.kernel - 1 - a.pad_after,
                output: a.input,
                ..a
            })
        };
        let g = &self.geometry;
        if g.groups != 1 {
            return None;
        }
        let geometry = ConvGeometry {
            height: axis(g.height)?,
            width: axis(g.width)?,
            in_channels: g.out_channels,
            out_channels: g.in_channels,
            groups: 1,
        };
        // Taken where it does no more multiply-adds than `dy W^T` (an input
        // no larger than the output, as `same` padding makes it) and its
        // output is too wide for the direct kernel: LeNet-5's second conv
        // (14x14 from 10x10, into 6 channels) trained slower this way.
        let more_work = g.height.input * g.width.input > g.height.output * g.width.output;
        if more_work || direct::is_direct(&geometry, Kernels::Fastest) {
            return None;
        }
        let (kh, kw) = (g.height.kernel, g.width.kernel);
        let weight = Array4::from_shape_fn(geometry.weight_shape(), |(ky, kx, o, i)| {
            self.weight[[kh - 1 - ky, kw - 1 - kx, i, o]]
        });
        Some(Conv2d { weight, bias: None, geometry, version: super::next_version() })
    }
}

/// An unpadded image `x` of `g` and its output's gradient, the start of
/// `dy`, cut into bands of output rows, each with the input rows its
/// windows read and their geometry: the taps of a band and its gradient
/// stay in L1 while the weight gradient's blocks of taps pass over them,
/// where a whole image's fall out of it between blocks. A band's gradient
/// goes on into what follows it in `dy`, up to a vector: the kernel loads
/// a row of fewer channels than a vector whole where it can.
fn row_bands<'a>(
    x: &'a [f32],
    g: &ConvGeometry,
    dy: &'a [f32],
) -> impl Iterator<Item = (&'a [f32], ConvGeometry, &'a [f32])> + use<'a> {
    const BAND_BYTES: usize = 32 * 1024;
    const MOST_LANES: usize = 16;
    let (h, w, g) = (g.height, g.width, *g);
    let (input_row, output_row) = (w.input * g.in_channels, w.output * g.out_channels);
    let reach = h.dilation * (h.kernel - 1) + 1;
    let row_bytes = (input_row * h.stride + output_row) * size_of::<f32>();
    let rows = (BAND_BYTES / row_bytes.max(1)).clamp(1, h.output.max(1));
    (0..h.output).step_by(rows).map(move |first| {
        let band = rows.min(h.output - first);
        let input = (band - 1) * h.stride + reach;
        let height = Axis { input, output: band, ..h };
        let x = &x[first * h.stride * input_row..][..input * input_row];
        let dy = &dy[first * output_row..];
        (x, ConvGeometry { height, ..g }, &dy[..dy.len().min(band * output_row + MOST_LANES)])
    })
}

/// Whether the window moves one cell at a time, undilated, over every cell
/// of the padded input: then each gradient of the conv is a conv itself.
fn slides_by_one(a: &Axis) -> bool {
    a.stride == 1 && a.dilation == 1 && a.pad_before + a.input + a.pad_after == a.output + a.kernel - 1
}

/// `to` the transpose of `from`, a row-major matrix `cols` wide.
fn transpose(from: &[f32], cols: usize, to: &mut [f32]) {
    let rows = from.len() / cols.max(1);
    for (i, row) in from.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            to[j * rows + i] = v;
        }
    }
}

/// What one thread of a conv's backward pass works in, kept from part to part.
#[derive(Default)]
struct Scratch {
    /// An im2col tile.
    col: Vec<f32>,
    /// The gradient of an im2col tile.
    dcol: Vec<f32>,
    /// A tile of the output gradient, transposed.
    dy_t: Vec<f32>,
    /// The part's weight gradient, transposed.
    dw_t: Vec<f32>,
}
