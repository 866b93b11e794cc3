//! Max and average pooling over NHWC, with PyTorch's padding rules, and the
//! global pools.
//!
//! A pool runs output row by output row: the input rows under the window are
//! first combined value by value into one row (long runs, vectorised to the
//! CPU's width), then each output pixel combines its window's columns of
//! that row. Windows that do not overlap, over 16 channels or more, are
//! instead combined pixel by pixel from their cells, a vector of channels
//! at a time (`Cells`). Threads take whole images.

use std::marker::PhantomData;

use ndarray::{Array2, Array4, ArrayView4};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::tensor;
use crate::cpu::Kernels;
use crate::gemm_narrow::{first_lanes, load, store};
use crate::workspace::{sharing_threads, split_among_threads};
use crate::{Error, cpu};
use cnn_shape::Axis;

/// Max pooling, `nn.MaxPool2d`: padding never wins the max.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    pub height: Axis,
    pub width: Axis,
}

/// Average pooling, `nn.AvgPool2d` with `count_include_pad=True`: padded
/// cells count in the divisor, cells past the padding (`ceil`) do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    pub height: Axis,
    pub width: Axis,
}

impl MaxPool2d {
    pub const fn new(height: Axis, width: Axis) -> MaxPool2d {
        MaxPool2d { height, width }
    }

    /// Pools `(N, H, W, C)` into `(N, OH, OW, C)`.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Result<Array4<f32>, Error> {
        forward(x, self.height, self.width, |x, c, out| self.run(x, c, out, &mut Vec::new()))
    }

    /// Pools the NHWC images of `x`, `channels` deep, into `out`. `scratch`
    /// holds a row per thread, grown as needed and kept for next time.
    pub(crate) fn run(&self, x: &[f32], channels: usize, out: &mut [f32], scratch: &mut Vec<Vec<f32>>) {
        pool::<Max>(x, channels, out, self.height, self.width, scratch);
    }
}

impl AvgPool2d {
    pub const fn new(height: Axis, width: Axis) -> AvgPool2d {
        AvgPool2d { height, width }
    }

    /// Pools `(N, H, W, C)` into `(N, OH, OW, C)`.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Result<Array4<f32>, Error> {
        forward(x, self.height, self.width, |x, c, out| self.run(x, c, out, &mut Vec::new()))
    }

    /// Pools the NHWC images of `x`, `channels` deep, into `out`. `scratch`
    /// holds a row per thread, grown as needed and kept for next time.
    pub(crate) fn run(&self, x: &[f32], channels: usize, out: &mut [f32], scratch: &mut Vec<Vec<f32>>) {
        pool::<Mean>(x, channels, out, self.height, self.width, scratch);
    }
}

/// How a pool combines the cells of a window, value by value or a vector
/// of values at a time (the same result, lane by lane).
pub(crate) trait Reduce {
    const EMPTY: f32;
    fn combine(acc: f32, v: f32) -> f32;
    /// Turns the combined cells of a window into its output.
    fn finish(pixel: &mut [f32], divisor: usize);

    /// What a vector of a window's cells is combined into.
    type Vectors<S: Simd>: Copy;
    fn start<S: Simd>(simd: S) -> Self::Vectors<S>;
    fn take<S: Simd>(simd: S, acc: Self::Vectors<S>, v: S::f32s) -> Self::Vectors<S>;
    fn output<S: Simd>(simd: S, acc: Self::Vectors<S>, divisor: usize) -> S::f32s;
}

pub(crate) struct Max;
struct Mean;

impl Reduce for Max {
    const EMPTY: f32 = f32::NEG_INFINITY;

    #[inline(always)]
    fn combine(acc: f32, v: f32) -> f32 {
        // `max` alone would drop NaN; PyTorch propagates it. Not `if v >
        // acc { v } else { acc }`: that becomes a masked store of `v` where
        // it wins, which costs a dozen cycles a vector on AMD. (The two
        // differ only in which of -0 and +0 a tie of zeros keeps.)
        if acc.is_nan() | v.is_nan() { acc + v } else { acc.max(v) }
    }

    #[inline(always)]
    fn finish(_: &mut [f32], _: usize) {}

    /// The max of the cells and whether every cell was a number (not
    /// NaN): one `max` a cell on the way rather than a select that waits
    /// on each compare.
    type Vectors<S: Simd> = (S::f32s, S::m32s);

    #[inline(always)]
    fn start<S: Simd>(simd: S) -> Self::Vectors<S> {
        let zero = simd.splat_f32s(0.0);
        (simd.splat_f32s(f32::NEG_INFINITY), simd.equal_f32s(zero, zero))
    }

    #[inline(always)]
    fn take<S: Simd>(simd: S, (max, numbers): Self::Vectors<S>, v: S::f32s) -> Self::Vectors<S> {
        (simd.max_f32s(max, v), simd.and_m32s(numbers, simd.equal_f32s(v, v)))
    }

    #[inline(always)]
    fn output<S: Simd>(simd: S, (max, numbers): Self::Vectors<S>, _: usize) -> S::f32s {
        simd.select_f32s(numbers, max, simd.splat_f32s(f32::NAN))
    }
}

impl Reduce for Mean {
    const EMPTY: f32 = 0.0;

    #[inline(always)]
    fn combine(acc: f32, v: f32) -> f32 {
        acc + v
    }

    #[inline(always)]
    fn finish(pixel: &mut [f32], divisor: usize) {
        let scale = 1.0 / divisor as f32;
        pixel.iter_mut().for_each(|v| *v *= scale);
    }

    type Vectors<S: Simd> = S::f32s;

    #[inline(always)]
    fn start<S: Simd>(simd: S) -> S::f32s {
        simd.splat_f32s(0.0)
    }

    #[inline(always)]
    fn take<S: Simd>(simd: S, sum: S::f32s, v: S::f32s) -> S::f32s {
        simd.add_f32s(sum, v)
    }

    #[inline(always)]
    fn output<S: Simd>(simd: S, sum: S::f32s, divisor: usize) -> S::f32s {
        simd.mul_f32s(sum, simd.splat_f32s(1.0 / divisor as f32))
    }
}

fn forward(
    x: ArrayView4<'_, f32>,
    height: Axis,
    width: Axis,
    run: impl Fn(&[f32], usize, &mut [f32]),
) -> Result<Array4<f32>, Error> {
    let (n, c) = (x.shape()[0], x.shape()[3]);
    tensor::check_input(&x, [height.input, width.input, c], "pool")?;
    let x = x.as_standard_layout();
    let mut out = vec![0.0f32; n * height.output * width.output * c];
    run(x.as_slice().expect("standard layout is contiguous"), c, &mut out);
    Ok(Array4::from_shape_vec((n, height.output, width.output, c), out).expect("output length is n*oh*ow*c"))
}

/// Input cells of window `o` along `axis`, and how many cells it has inside
/// input plus padding (PyTorch's divisor).
fn window_range(axis: Axis, o: usize) -> (std::ops::Range<usize>, usize) {
    let start = axis.start(o);
    let end = (start + axis.kernel as isize).min((axis.input + axis.pad_after) as isize);
    let padded_len = (end - start) as usize;
    let inside = start.max(0) as usize..end.clamp(0, axis.input as isize) as usize;
    (inside, padded_len)
}

/// Pools every image of `x` into `out`, the images shared evenly between
/// the threads; each image is pooled the same way whatever the count.
fn pool<R: Reduce>(
    x: &[f32],
    c: usize,
    out: &mut [f32],
    height: Axis,
    width: Axis,
    scratch: &mut Vec<Vec<f32>>,
) {
    let (image_len, out_len) = (height.input * width.input * c, height.output * width.output * c);
    assert!(x.len() / image_len.max(1) * out_len == out.len(), "pool input or output length");
    if out.is_empty() {
        return;
    }
    // Windows that do not overlap, over pixels of an AVX-512 vector or more: each
    // output pixel combines its cells from the image, which reads each
    // cell once, where the rows compute a window at every column, twice
    // the windows kept at stride 2. (With fewer channels, a pixel's few
    // values a cell cost more than the rows' long runs.)
    let by_cells = c >= 16 && height.stride >= height.kernel && width.stride >= width.kernel;
    split_among_threads(out, out_len, scratch, |image, out, row| {
        let x = &x[image * image_len..][..image_len];
        if by_cells {
            let cells = Cells::<R> { image: x, c, out, height, width, reduce: PhantomData };
            return pulp::Arch::new().dispatch(cells);
        }
        row.resize(2 * width.input * c, 0.0);
        cpu::vectorized(
            #[inline(always)]
            || pool_image::<R>(x, c, out, height, width, row),
        )
    });
}

/// One image pooled pixel by pixel, each output pixel's window combined
/// from its cells a vector of channels at a time (the compiler's own loop
/// takes 64 values a turn, and left a pixel of 32 to its 8-wide tail).
struct Cells<'a, R> {
    image: &'a [f32],
    c: usize,
    out: &'a mut [f32],
    height: Axis,
    width: Axis,
    reduce: PhantomData<R>,
}

impl<R: Reduce> WithSimd for Cells<'_, R> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Cells { image, c, out, height, width, .. } = self;
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let row_len = width.input * c;
        for (oy, out_row) in out.chunks_exact_mut(width.output * c).enumerate() {
            let (rows, h_len) = window_range(height, oy);
            // Rows of `maxpool 2` windows: the two rows sliced once, and
            // each window's four cells read a vector at a time from them,
            // where the general path's bookkeeping for each vector cost
            // more than its four loads.
            let pair = (rows.len() == 2 && c.is_multiple_of(lanes))
                .then(|| image[rows.start * row_len..][..2 * row_len].split_at(row_len));
            for (ox, pixel) in out_row.chunks_exact_mut(c).enumerate() {
                let (cols, w_len) = window_range(width, ox);
                if let (Some((top, bottom)), 2) = (pair, cols.len()) {
                    let (top, bottom) = (&top[cols.start * c..][..2 * c], &bottom[cols.start * c..][..2 * c]);
                    let (top, bottom) = (top.split_at(c), bottom.split_at(c));
                    let cells = top.0.chunks_exact(lanes).zip(top.1.chunks_exact(lanes));
                    let cells = cells.zip(bottom.0.chunks_exact(lanes).zip(bottom.1.chunks_exact(lanes)));
                    for (out, ((top_left, top_right), (bottom_left, bottom_right))) in
                        pixel.chunks_exact_mut(lanes).zip(cells)
                    {
                        let mut acc = R::start(simd);
                        for cell in [top_left, top_right, bottom_left, bottom_right] {
                            acc = R::take(simd, acc, load(simd, cell));
                        }
                        store(simd, out, R::output(simd, acc, h_len * w_len));
                    }
                    continue;
                }
                let window = Window {
                    first: (rows.start * width.input + cols.start) * c,
                    cells: (rows.len(), cols.len()),
                    apart: (width.input * c, c),
                };
                for (v, out) in pixel.chunks_mut(lanes).enumerate() {
                    let acc = window.combine::<S, R>(simd, image, v * lanes, out.len());
                    store(simd, out, R::output(simd, acc, h_len * w_len));
                }
            }
        }
    }
}

/// The cells of a window in an image: `cells.0` rows of `cells.1`, from
/// value `first` on, `apart.0` values from row to row and `apart.1` from
/// cell to cell.
struct Window {
    first: usize,
    cells: (usize, usize),
    apart: (usize, usize),
}

impl Window {
    /// The `len` values from `offset` of each cell in `image` (at most a
    /// vector) combined. Its extent is checked once, not cell by cell: the
    /// checks of each cell's load cost more than its `max`.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn combine<S: Simd, R: Reduce>(
        &self,
        simd: S,
        image: &[f32],
        offset: usize,
        len: usize,
    ) -> R::Vectors<S> {
        let ((rows, cols), (row_step, cell_step)) = (self.cells, self.apart);
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let mut acc = R::start(simd);
        if rows == 0 || cols == 0 {
            return acc;
        }
        let last = self.first + (rows - 1) * row_step + (cols - 1) * cell_step + offset;
        assert!(len <= lanes && last + len <= image.len(), "pool: a window past its image");
        let first = image[self.first + offset..].as_ptr();
        macro_rules! take_all {
            ($rows:expr, $cols:expr, $len:expr) => {
                for y in 0..$rows {
                    for x in 0..$cols {
                        // SAFETY: the cell's `len` values end at or before
                        // the last cell's, within `image` (asserted above).
                        let at = y * row_step + x * cell_step;
                        let cell = unsafe { std::slice::from_raw_parts(first.add(at), $len) };
                        acc = R::take(simd, acc, load(simd, cell));
                    }
                }
            };
        }
        // `maxpool 2`'s windows of whole vectors with the counts known to
        // the compiler, which then unrolls them.
        match ((rows, cols), len == lanes) {
            ((2, 2), true) => take_all!(2, 2, lanes),
            _ => take_all!(rows, cols, len),
        }
        acc
    }
}

/// One image: for each output row, its window rows combined into a row,
/// then the window's columns of that row combined at every column (whole
/// rows again, vectorised), of which each output pixel takes its own; a
/// window cut by padding combines its columns itself. `scratch` holds two
/// input rows.
#[inline(always)]
fn pool_image<R: Reduce>(
    image: &[f32],
    c: usize,
    out: &mut [f32],
    height: Axis,
    width: Axis,
    scratch: &mut [f32],
) {
    let row_len = width.input * c;
    let (row, windows) = scratch.split_at_mut(row_len);
    // `windows[x * c..]`: the window whose first column is x, while it fits.
    let reach = (width.kernel - 1) * c;
    let windows = &mut windows[..row_len.saturating_sub(reach)];
    for (oy, out_row) in out.chunks_exact_mut(width.output * c).enumerate() {
        let (rows, h_len) = window_range(height, oy);
        combine_all::<R>(row, image[rows.start * row_len..rows.end * row_len].chunks_exact(row_len));
        let len = windows.len();
        if len > 0 {
            combine_all::<R>(windows, (0..width.kernel).map(|kx| &row[kx * c..][..len]));
        }
        // The windows' sizes, while they are all the same: then the row is
        // finished at once, not a division a pixel.
        let mut same_len = Some(window_range(width, 0).1);
        for (ox, pixel) in out_row.chunks_exact_mut(c).enumerate() {
            let (cols, w_len) = window_range(width, ox);
            if cols.len() == width.kernel {
                // Combined with EMPTY rather than copied: a copy of a few
                // values is a call to memcpy.
                combine_all::<R>(pixel, std::iter::once(&windows[cols.start * c..][..c]));
            } else {
                combine_all::<R>(pixel, row[cols.start * c..cols.end * c].chunks_exact(c));
            }
            same_len = same_len.filter(|&len| len == w_len);
        }
        match same_len {
            Some(w_len) => R::finish(out_row, h_len * w_len),
            None => out_row
                .chunks_exact_mut(c)
                .enumerate()
                .for_each(|(ox, pixel)| R::finish(pixel, h_len * window_range(width, ox).1)),
        }
    }
}

/// `acc` becomes the combination of `parts`, or `R::EMPTY` if there are none.
#[inline(always)]
fn combine_all<'a, R: Reduce>(acc: &mut [f32], mut parts: impl Iterator<Item = &'a [f32]>) {
    // The first part is combined with EMPTY rather than copied: the
    // compiler would turn a copy of a few values into a call to memcpy.
    let Some(first) = parts.next() else {
        acc.fill(R::EMPTY);
        return;
    };
    acc.iter_mut().zip(first).for_each(|(a, &v)| *a = R::combine(R::EMPTY, v));
    for part in parts {
        acc.iter_mut().zip(part).for_each(|(a, &v)| *a = R::combine(*a, v));
    }
}

/// `AdaptiveAvgPool2d(1)` then flatten: `(N, H, W, C)` into `(N, C)`.
pub fn global_avg_pool(x: ArrayView4<'_, f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    let mut out = vec![0.0; n * c];
    global_pool(x.as_standard_layout().as_slice().expect("contiguous"), h * w, c, &mut out, false);
    Array2::from_shape_vec((n, c), out).expect("n*c values")
}

/// `AdaptiveMaxPool2d(1)` then flatten: `(N, H, W, C)` into `(N, C)`.
pub fn global_max_pool(x: ArrayView4<'_, f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    let mut out = vec![0.0; n * c];
    global_pool(x.as_standard_layout().as_slice().expect("contiguous"), h * w, c, &mut out, true);
    Array2::from_shape_vec((n, c), out).expect("n*c values")
}

/// The mean or max of each channel over the `cells` pixels of each image.
pub(crate) fn global_pool(x: &[f32], cells: usize, c: usize, out: &mut [f32], max: bool) {
    for (image, pixel) in x.chunks_exact((cells * c).max(1)).zip(out.chunks_exact_mut(c.max(1))) {
        pixel.fill(if max { f32::NEG_INFINITY } else { 0.0 });
        for cell in image.chunks_exact(c) {
            for (o, &v) in pixel.iter_mut().zip(cell) {
                *o = if max { Max::combine(*o, v) } else { *o + v };
            }
        }
        if !max {
            let scale = 1.0 / cells.max(1) as f32;
            pixel.iter_mut().for_each(|o| *o *= scale);
        }
    }
}

impl MaxPool2d {
    /// Routes each output gradient to the input cell that won its window:
    /// the first whose value is the output `y` (the first maximum, or the
    /// first NaN, as in the forward pass); `dx` is overwritten. Channels go
    /// through a window together, a vector at a time, each until its cell
    /// is found. Where no two windows share a cell (`maxpool 2`), each
    /// cell's gradient is written, not added, and where they cover the
    /// input too, `dx` is not zeroed first.
    pub(crate) fn backward(
        &self,
        (x, y): (&[f32], &[f32]),
        channels: usize,
        dy: &[f32],
        dx: &mut [f32],
        kernels: Kernels,
    ) {
        let (h, w, c) = (self.height, self.width, channels);
        let (image_len, out_len) = (h.input * w.input * c, h.output * w.output * c);
        let apart = |a: &Axis| a.stride >= a.kernel;
        let covers = |a: &Axis| a.stride == a.kernel && a.output * a.kernel >= a.pad_before + a.input;
        let overlap = !(apart(&h) && apart(&w));
        if !(covers(&h) && covers(&w)) {
            dx.fill(0.0);
        }
        if out_len == 0 {
            return;
        }
        let route = |(((image, y), dy), dx)| {
            kernels.arch().dispatch(RouteMax { pool: self, c, overlap, image, y, dy, dx })
        };
        // Images on rayon's threads, unless this one works alone: handing
        // an image over costs about as much as routing a small one.
        match sharing_threads() {
            1 => x
                .chunks(image_len)
                .zip(y.chunks(out_len))
                .zip(dy.chunks(out_len))
                .zip(dx.chunks_mut(image_len))
                .for_each(route),
            _ => x
                .par_chunks(image_len)
                .zip(y.par_chunks(out_len))
                .zip(dy.par_chunks(out_len))
                .zip(dx.par_chunks_mut(image_len))
                .for_each(route),
        }
    }
}

/// [`MaxPool2d::backward`] of one image, at the vector width it is
/// dispatched to.
struct RouteMax<'a> {
    pool: &'a MaxPool2d,
    c: usize,
    overlap: bool,
    image: &'a [f32],
    y: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
}

impl WithSimd for RouteMax<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let RouteMax { pool, c, overlap, image, y, dy, dx } = self;
        let (h, w) = (pool.height, pool.width);
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let zero = simd.splat_f32s(0.0);
        let is_nan = |v| simd.not_m32s(simd.equal_f32s(v, v));
        // The first `len` lanes of a vector at `values[at]`, zero past them:
        // padded lanes match (0 == 0) and route a zero gradient, nowhere.
        let channels = |values: &[f32], at: usize, len: usize| {
            let v = load(simd, &values[at..]);
            match len < lanes {
                true => simd.select_f32s(first_lanes(simd, len), v, zero),
                false => v,
            }
        };
        for (oy, ox) in (0..h.output).flat_map(|oy| (0..w.output).map(move |ox| (oy, ox))) {
            let (rows, _) = window_range(h, oy);
            let (cols, _) = window_range(w, ox);
            for first in (0..c).step_by(lanes) {
                let len = lanes.min(c - first);
                let at = (oy * w.output + ox) * c + first;
                let (y, dy) = (channels(y, at, len), channels(dy, at, len));
                // Set until the channel's cell is found.
                let mut open = simd.equal_f32s(zero, zero);
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let at = (iy * w.input + ix) * c + first;
                        // Lanes past `len` (the next cell's) meet a zero gradient.
                        let x = load(simd, &image[at..]);
                        let same = simd.or_m32s(simd.equal_f32s(x, y), simd.and_m32s(is_nan(x), is_nan(y)));
                        // A select, not `won * dy`: a NaN gradient would reach every cell.
                        let routed = simd.select_f32s(simd.and_m32s(open, same), dy, zero);
                        open = simd.and_m32s(open, simd.not_m32s(same));
                        // A whole vector adds zeros to the next channels where
                        // it fits. Where windows do not overlap, it writes
                        // them instead: into the next cells of the row, routed
                        // later if a cell is one vector, but not past the
                        // row's end into the next row's, which may have been.
                        let spills_later = c <= lanes && at + lanes <= (iy + 1) * w.input * c;
                        match (overlap, dx.get_mut(at..at + lanes)) {
                            (true, Some(whole)) => {
                                store(simd, whole, simd.add_f32s(load(simd, whole), routed))
                            }
                            (false, Some(whole)) if len == lanes || spills_later => {
                                store(simd, whole, routed)
                            }
                            (true, None) => {
                                let part = &mut dx[at..at + len];
                                store(simd, part, simd.add_f32s(load(simd, part), routed))
                            }
                            (false, _) => store(simd, &mut dx[at..at + len], routed),
                        }
                    }
                }
            }
        }
    }
}

impl AvgPool2d {
    /// Spreads each output gradient over its window, divided as in the
    /// forward pass; `dx` is overwritten.
    pub(crate) fn backward(&self, channels: usize, dy: &[f32], dx: &mut [f32]) {
        let (h, w, c) = (self.height, self.width, channels);
        let (image_len, out_len) = (h.input * w.input * c, h.output * w.output * c);
        dx.fill(0.0);
        if out_len == 0 {
            return;
        }
        let one_image = |(dy, dx): (&[f32], &mut [f32])| {
            for (pixel, dy) in dy.chunks_exact(c).enumerate() {
                let (rows, h_len) = window_range(h, pixel / w.output);
                let (cols, w_len) = window_range(w, pixel % w.output);
                let scale = 1.0 / (h_len * w_len) as f32;
                for iy in rows {
                    for ix in cols.clone() {
                        let at = (iy * w.input + ix) * c;
                        dx[at..at + c].iter_mut().zip(dy).for_each(|(d, g)| *d += g * scale);
                    }
                }
            }
        };
        match sharing_threads() {
            1 => dy.chunks(out_len).zip(dx.chunks_mut(image_len)).for_each(one_image),
            _ => dy.par_chunks(out_len).zip(dx.par_chunks_mut(image_len)).for_each(one_image),
        }
    }
}

/// The gradient of [`global_pool`]: spread over the cells (mean) or routed
/// to the first maximum (max); `dx` is overwritten.
pub(crate) fn global_pool_backward(x: &[f32], cells: usize, c: usize, dy: &[f32], dx: &mut [f32], max: bool) {
    let image_len = (cells * c).max(1);
    for ((image, dy), dx) in
        x.chunks_exact(image_len).zip(dy.chunks_exact(c.max(1))).zip(dx.chunks_exact_mut(image_len))
    {
        if !max {
            let scale = 1.0 / cells.max(1) as f32;
            for cell in dx.chunks_exact_mut(c) {
                cell.iter_mut().zip(dy).for_each(|(d, g)| *d = g * scale);
            }
            continue;
        }
        dx.fill(0.0);
        for ch in 0..c {
            let mut best = (f32::NEG_INFINITY, usize::MAX);
            for cell in 0..cells {
                let v = image[cell * c + ch];
                if best.1 == usize::MAX || v > best.0 || v.is_nan() && !best.0.is_nan() {
                    best = (v, cell * c + ch);
                }
            }
            dx[best.1] += dy[ch];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, kernel: usize, stride: usize, pad: usize, output: usize) -> Axis {
        Axis { input, kernel, stride, pad_before: pad, pad_after: pad, dilation: 1, output }
    }

    /// Values with many ties and a few NaNs: `i`'s hash, in halves.
    fn value(i: usize) -> f32 {
        let hash = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59;
        if hash == 31 { f32::NAN } else { (hash % 5) as f32 * 0.5 }
    }

    /// A window's output is its largest value, NaN if it holds one, as a
    /// plain loop finds it; the global pool's too.
    #[test]
    fn max_forward_propagates_nan() {
        let (height, width) = (axis(6, 2, 2, 0, 3), axis(5, 3, 2, 1, 3));
        for c in [1, 3, 8, 13] {
            let x: Vec<f32> = (0..2 * 6 * 5 * c).map(value).collect();
            let mut y = vec![0.0; 2 * 3 * 3 * c];
            MaxPool2d::new(height, width).run(&x, c, &mut y, &mut Vec::new());
            let mut global = vec![0.0; 2 * c];
            global_pool(&x, 6 * 5, c, &mut global, true);
            let largest = |cells: &mut dyn Iterator<Item = f32>| {
                cells.fold(
                    f32::NEG_INFINITY,
                    |m, v| if m.is_nan() || v.is_nan() { f32::NAN } else { m.max(v) },
                )
            };
            let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
            for (i, &got) in y.iter().enumerate() {
                let (b, oy, ox, ch) = (i / (9 * c), i / (3 * c) % 3, i / c % 3, i % c);
                let (rows, cols) = (window_range(height, oy).0, window_range(width, ox).0);
                let at = |iy: usize, ix: usize| x[((b * 6 + iy) * 5 + ix) * c + ch];
                let want = largest(
                    &mut rows.flat_map(|iy| cols.clone().map(move |ix| (iy, ix))).map(|(iy, ix)| at(iy, ix)),
                );
                assert!(same(got, want), "c {c}, output {i}: {got} != {want}");
            }
            for (i, &got) in global.iter().enumerate() {
                let want = largest(&mut (0..30).map(|cell| x[((i / c) * 30 + cell) * c + i % c]));
                assert!(same(got, want), "global, c {c}, output {i}: {got} != {want}");
            }
        }
    }

    /// The images `x` pooled by `Cells` with `simd`'s vectors.
    fn cells<S: Simd, R: Reduce>(simd: S, x: &[f32], c: usize, (height, width): (Axis, Axis)) -> Vec<f32> {
        let (image_len, out_len) = (height.input * width.input * c, height.output * width.output * c);
        let mut y = vec![f32::NAN; x.len() / image_len * out_len];
        for (image, out) in x.chunks_exact(image_len).zip(y.chunks_exact_mut(out_len)) {
            let cells = Cells::<R> { image, c, out, height, width, reduce: PhantomData };
            simd.vectorize(
                #[inline(always)]
                || cells.with_simd(simd),
            );
        }
        y
    }

    /// Pixel by pixel at every vector width this CPU runs, against nested
    /// loops: the max with NaN and ties, the mean over PyTorch's divisor,
    /// windows cut by padding, channels filling vectors or not.
    #[test]
    fn cells_match_nested_loops_at_every_width() {
        let windows = (axis(5, 2, 2, 1, 3), axis(7, 2, 2, 1, 4));
        for c in [16, 32, 40, 45] {
            let x: Vec<f32> = (0..6 * 5 * 7 * c).map(value).collect();
            let mut results = vec![
                ("scalar max", cells::<_, Max>(pulp::Scalar::new(), &x, c, windows), false),
                ("scalar mean", cells::<_, Mean>(pulp::Scalar::new(), &x, c, windows), true),
            ];
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                results.push(("avx2 max", cells::<_, Max>(simd, &x, c, windows), false));
                results.push(("avx2 mean", cells::<_, Mean>(simd, &x, c, windows), true));
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V4::try_new() {
                results.push(("avx512 max", cells::<_, Max>(simd, &x, c, windows), false));
                results.push(("avx512 mean", cells::<_, Mean>(simd, &x, c, windows), true));
            }
            for (name, y, mean) in results {
                for (i, &got) in y.iter().enumerate() {
                    let (b, oy, ox, ch) = (i / (12 * c), i / (4 * c) % 3, i / c % 4, i % c);
                    let ((rows, h_len), (cols, w_len)) =
                        (window_range(windows.0, oy), window_range(windows.1, ox));
                    let at = |(iy, ix): (usize, usize)| x[((b * 5 + iy) * 7 + ix) * c + ch];
                    let cells = rows.flat_map(|iy| cols.clone().map(move |ix| (iy, ix))).map(at);
                    let want = match mean {
                        true => cells.sum::<f32>() / (h_len * w_len) as f32,
                        false => cells.fold(f32::NEG_INFINITY, |m, v| {
                            if m.is_nan() || v.is_nan() { f32::NAN } else { m.max(v) }
                        }),
                    };
                    let close =
                        (got - want).abs() <= 1e-6 * want.abs().max(1.0) || (got.is_nan() && want.is_nan());
                    assert!(close, "{name}, c {c}, output {i}: {got} != {want}");
                }
            }
        }
    }

    /// Each output gradient goes to the first cell of its window (in
    /// scan order, padding skipped) that holds the output, a NaN output to
    /// the first NaN: a plain loop, for windows that overlap, that do not
    /// and cover the input (padded or not), that leave cells out, and
    /// channel counts that fill vectors of 8 or 16 or not, more than one
    /// vector or not, on every kernel variant.
    #[test]
    fn max_backward_routes_to_the_first_winner() {
        let windows = [
            (axis(6, 2, 2, 0, 3), axis(4, 2, 2, 0, 2)),
            (axis(5, 3, 2, 1, 3), axis(7, 3, 2, 1, 4)),
            (axis(5, 2, 2, 1, 3), axis(7, 3, 3, 1, 3)),
            (axis(7, 2, 2, 0, 3), axis(6, 2, 3, 0, 2)),
        ];
        for (height, width) in windows {
            // Ties, NaN and repeats; and values that fall along each row, so
            // that each window's first cell is its winner, and the cell that
            // a block of a window's last cell reads into, the next window's.
            let falling = |i: usize| -(i as f32);
            let channels = [1, 6, 8, 11, 16, 20, 32];
            let cases = channels.into_iter().flat_map(|c| [(c, value as fn(usize) -> f32), (c, falling)]);
            for ((c, value), kernels) in cases.flat_map(|case| Kernels::ALL.map(|kernels| (case, kernels))) {
                let n = 2;
                let pool = MaxPool2d::new(height, width);
                let x: Vec<f32> = (0..n * height.input * width.input * c).map(value).collect();
                let mut y = vec![0.0; n * height.output * width.output * c];
                pool.run(&x, c, &mut y, &mut Vec::new());
                let dy: Vec<f32> =
                    (0..y.len()).map(|i| if i == 7 { f32::NAN } else { i as f32 + 1.0 }).collect();
                let mut dx = vec![f32::NAN; x.len()];
                pool.backward((&x, &y), c, &dy, &mut dx, kernels);

                let mut expected = vec![0.0f32; x.len()];
                let at = |b: usize, iy: usize, ix: usize, ch: usize| {
                    ((b * height.input + iy) * width.input + ix) * c + ch
                };
                for b in 0..n {
                    for (oy, ox, ch) in (0..height.output).flat_map(|oy| {
                        (0..width.output).flat_map(move |ox| (0..c).map(move |ch| (oy, ox, ch)))
                    }) {
                        let o = ((b * height.output + oy) * width.output + ox) * c + ch;
                        let (rows, _) = window_range(height, oy);
                        let (cols, _) = window_range(width, ox);
                        let cells = rows.flat_map(|iy| cols.clone().map(move |ix| (iy, ix)));
                        let same = |v: f32| v == y[o] || (v.is_nan() && y[o].is_nan());
                        let (iy, ix) =
                            cells.clone().find(|&(iy, ix)| same(x[at(b, iy, ix, ch)])).expect("a winner");
                        expected[at(b, iy, ix, ch)] += dy[o];
                    }
                }
                for (i, (got, want)) in dx.iter().zip(&expected).enumerate() {
                    assert!(
                        got == want || (got.is_nan() && want.is_nan()),
                        "{kernels:?} c {c}, cell {i}: {got} != {want}"
                    );
                }
            }
        }
    }
}
