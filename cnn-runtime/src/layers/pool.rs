//! Max and average pooling over NHWC, with PyTorch's padding rules, and the
//! global pools.

use ndarray::{Array2, Array4, ArrayView4, Axis as NdAxis};

use crate::window::Axis;

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
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Array4<f32> {
        pool(x, self.height, self.width, |window, _, out| {
            out.fill(f32::NEG_INFINITY);
            for cell in window {
                for (o, &v) in out.iter_mut().zip(cell) {
                    // `v > o` would drop NaN; PyTorch propagates it.
                    if v > *o || v.is_nan() {
                        *o = v;
                    }
                }
            }
        })
    }
}

impl AvgPool2d {
    pub const fn new(height: Axis, width: Axis) -> AvgPool2d {
        AvgPool2d { height, width }
    }

    /// Pools `(N, H, W, C)` into `(N, OH, OW, C)`.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Array4<f32> {
        pool(x, self.height, self.width, |window, divisor, out| {
            out.fill(0.0);
            for cell in window {
                for (o, &v) in out.iter_mut().zip(cell) {
                    *o += v;
                }
            }
            let scale = 1.0 / divisor as f32;
            out.iter_mut().for_each(|o| *o *= scale);
        })
    }
}

/// Cells of the window `o` along `axis` that lie inside the input, and how
/// many cells the window has inside input plus padding (PyTorch's divisor).
fn window_range(axis: Axis, o: usize) -> (std::ops::Range<usize>, usize) {
    let start = axis.start(o);
    let end = (start + axis.kernel as isize).min((axis.input + axis.pad_after) as isize);
    let padded_len = (end - start) as usize;
    let inside = start.max(0) as usize..end.min(axis.input as isize).max(0) as usize;
    (inside, padded_len)
}

/// Runs `reduce(cells, divisor, out)` for every output pixel, `cells` being
/// the channel slices of the input cells under the window.
fn pool(
    x: ArrayView4<'_, f32>,
    height: Axis,
    width: Axis,
    reduce: impl Fn(&mut dyn Iterator<Item = &[f32]>, usize, &mut [f32]),
) -> Array4<f32> {
    assert_eq!(&x.shape()[1..3], &[height.input, width.input], "pool input shape");
    let (n, c) = (x.shape()[0], x.shape()[3]);
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout is contiguous");
    let mut out = vec![0.0f32; n * height.output * width.output * c];
    let image_len = height.input * width.input * c;
    let mut pixels = out.chunks_exact_mut(c.max(1));
    for b in 0..n {
        let image = &x[b * image_len..][..image_len];
        for oy in 0..height.output {
            let (rows, h_len) = window_range(height, oy);
            for ox in 0..width.output {
                let (cols, w_len) = window_range(width, ox);
                let mut cells = rows
                    .clone()
                    .flat_map(|iy| cols.clone().map(move |ix| (iy * width.input + ix) * c))
                    .map(|at| &image[at..at + c]);
                if let Some(pixel) = pixels.next() {
                    reduce(&mut cells, h_len * w_len, pixel);
                }
            }
        }
    }
    Array4::from_shape_vec((n, height.output, width.output, c), out).expect("output length is n*oh*ow*c")
}

/// `AdaptiveAvgPool2d(1)` then flatten: `(N, H, W, C)` into `(N, C)`.
pub fn global_avg_pool(x: ArrayView4<'_, f32>) -> Array2<f32> {
    let cells = (x.shape()[1] * x.shape()[2]).max(1) as f32;
    x.sum_axis(NdAxis(1)).sum_axis(NdAxis(1)) / cells
}

/// `AdaptiveMaxPool2d(1)` then flatten: `(N, H, W, C)` into `(N, C)`.
pub fn global_max_pool(x: ArrayView4<'_, f32>) -> Array2<f32> {
    x.fold_axis(NdAxis(1), f32::NEG_INFINITY, |&m, &v| if v > m || v.is_nan() { v } else { m }).fold_axis(
        NdAxis(1),
        f32::NEG_INFINITY,
        |&m, &v| {
            if v > m || v.is_nan() { v } else { m }
        },
    )
}
