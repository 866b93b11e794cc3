//! 3x3 convolutions of stride 1 by Winograd's minimal filtering F(2x2,
//! 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2015): each 2x2 block of output pixels, a tile, comes from
//! the 4x4 input window around it in 16 multiply-adds a pair of input and
//! output channels, where the patches take 36.
//!
//! A block of tiles' windows is transformed (`B^T d B`, 16 values a
//! channel, a tile's 16 rows of channels one after another), then
//! multiplied by the weights' transforms (`G g G^T`, 16 `[CIN x COUT]`
//! matrices made once a pass): 16 GEMMs on the kernel of
//! [`crate::gemm_narrow`], each `[tiles x CIN]` (its rows `16 * CIN`
//! apart) by `[CIN x COUT]`. Their products are transformed back (`A^T m
//! A`) into the tiles' pixels, the layer's epilogue applied on the way;
//! with a `maxpool 2` after the conv, each tile is one of its windows,
//! pooled there into one pixel. The padding is never written out: a
//! window's positions outside the image are zeros. In NHWC a pixel's channels lie next to each other, so
//! the transforms take a vector of channels at a time. Each output value
//! is a fixed sum over `k` in order, whatever the blocks, chunks and
//! threads.

use std::mem::size_of;
use std::ops::Range;

use pulp::{Simd, WithSimd};

use crate::cpu::Kernels;
use crate::gemm::{MatMut, MatRef};
use crate::gemm_narrow::{self, Finish, Panels, activate, load};
use crate::layers::{Max, Reduce};
use crate::workspace::Slots;
use cnn_shape::{Activation, Axis, ConvGeometry};

/// Tiles the GEMMs take at a time: a multiple of the kernel's rows, and
/// few enough that a block's transformed inputs and products (16 values a
/// tile and channel each) stay in L2.
const BLOCK_TILES: usize = 48;

/// The fewest input and output channels convolved this way: with fewer,
/// the transforms cost more than the multiply-adds they save.
const MIN_CHANNELS: usize = 16;

/// Whether `g` is convolved this way with `kernels`: a 3x3 kernel of
/// stride 1, undilated and ungrouped, where the GEMM kernel runs.
pub(crate) fn applies(g: &ConvGeometry, kernels: Kernels) -> bool {
    let three = |a: Axis| a.kernel == 3 && a.stride == 1 && a.dilation == 1;
    gemm_narrow::reads_patches(g, kernels)
        && three(g.height)
        && three(g.width)
        && g.in_channels >= MIN_CHANNELS
        && g.out_channels >= MIN_CHANNELS
}

/// How many values [`lay_out`] writes for `g`: 16 transformed matrices.
pub(crate) fn laid_out_len(g: &ConvGeometry) -> usize {
    16 * g.in_channels * g.out_channels
}

/// The weights `[3, 3, CIN, COUT]` transformed (`G g G^T` for each pair of
/// channels) into `into` ([`laid_out_len`] values): matrix `i` (of 16, a
/// position in the 4x4 window) `[CIN x COUT]` from `i * CIN * COUT`, in the
/// panels of `kernels`.
pub(crate) fn lay_out(weight: &[f32], g: &ConvGeometry, kernels: Kernels, into: &mut [f32]) {
    let (cin, cout) = (g.in_channels, g.out_channels);
    assert!(weight.len() == 9 * cin * cout && into.len() == laid_out_len(g), "winograd: weight lengths");
    let width = Panels::width(cout, kernels);
    kernels.arch().dispatch(Weights { weight, into, cin, cout, width });
}

/// `G g G^T` for each pair of channels: the weights' transforms, written
/// straight into panels `width` columns wide.
struct Weights<'a> {
    weight: &'a [f32],
    into: &'a mut [f32],
    cin: usize,
    cout: usize,
    width: usize,
}

impl WithSimd for Weights<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Weights { weight, into, cin, cout, width } = self;
        let (size, lanes) = (cin * cout, lanes::<S>());
        // The kernel's three rows into four, then each row's three values into four.
        let half = simd.splat_f32s(0.5);
        for ci in 0..cin {
            for co in (0..cout).step_by(lanes) {
                let (at, len) = (ci * cout + co, lanes.min(cout - co));
                macro_rules! row {
                    ($ky:expr) => {{
                        let tap = ($ky * 3 * size + at, ($ky * 3 + 1) * size + at, ($ky * 3 + 2) * size + at);
                        let (a, b, c) =
                            (&weight[tap.0..][..len], &weight[tap.1..][..len], &weight[tap.2..][..len]);
                        weight_four(simd, half, load(simd, a), load(simd, b), load(simd, c))
                    }};
                }
                let rows = [row!(0), row!(1), row!(2)];
                // Where this row's vector lies in a matrix's panels: a panel
                // is a whole number of vectors wide.
                let first = co / width * width;
                let panel_at = first * cin + ci * width.min(cout - first) + co - first;
                macro_rules! put_column {
                    ($j:expr) => {
                        let column = weight_four(simd, half, rows[0][$j], rows[1][$j], rows[2][$j]);
                        let start = $j * size + panel_at;
                        gemm_narrow::store(simd, &mut into[start..][..len], column[0]);
                        gemm_narrow::store(simd, &mut into[start + 4 * size..][..len], column[1]);
                        gemm_narrow::store(simd, &mut into[start + 8 * size..][..len], column[2]);
                        gemm_narrow::store(simd, &mut into[start + 12 * size..][..len], column[3]);
                    };
                }
                put_column!(0);
                put_column!(1);
                put_column!(2);
                put_column!(3);
            }
        }
    }
}

/// The scratch values [`Convolution::convolve`] takes for `g`: a block's transformed
/// inputs and products.
pub(crate) fn scratch_len(g: &ConvGeometry) -> usize {
    16 * BLOCK_TILES * (g.in_channels + g.out_channels)
}

/// A conv's images and where its outputs go, for [`Convolution::convolve`].
pub(crate) struct Convolution<'a> {
    pub g: &'a ConvGeometry,
    /// Whole images, NHWC.
    pub x: &'a [f32],
    /// What [`lay_out`] wrote.
    pub weights: &'a [f32],
    pub finish: Finish<'a>,
    pub kernels: Kernels,
    /// Output rows are `ldc` values apart, the conv's channels from `offset`.
    pub ldc: usize,
    pub offset: usize,
    /// With `maxpool 2` (windows of 2x2, stride 2, unpadded) run in the
    /// conv: the pool's output height and width. Its windows are the
    /// tiles, each pooled into one pixel as it is transformed back, and
    /// tiles past a floor pool's last window are never computed.
    pub pooled: Option<(usize, usize)>,
}

impl Convolution<'_> {
    /// Tiles across and down an image.
    pub(crate) fn tiles(&self) -> (usize, usize) {
        match self.pooled {
            Some((height, width)) => (width, height),
            None => (self.g.width.output.div_ceil(2), self.g.height.output.div_ceil(2)),
        }
    }

    /// The rows of tiles `tile_rows` (of all images, one after another)
    /// into `out`, the values of their output pixels; `scratch` holds at
    /// least [`scratch_len`] values.
    pub(crate) fn convolve(&self, tile_rows: Range<usize>, mut out: Slots<'_>, scratch: &mut [f32]) {
        let g = self.g;
        let (cin, cout) = (g.in_channels, g.out_channels);
        let (across, _) = self.tiles();
        let (inputs, products) = scratch[..scratch_len(g)].split_at_mut(16 * BLOCK_TILES * cin);
        let tiles = tile_rows.start * across..tile_rows.end * across;
        let first_pixel = self.first_pixel(tiles.start);
        for first in tiles.clone().step_by(BLOCK_TILES) {
            let block = first..(first + BLOCK_TILES).min(tiles.end);
            let n = block.len();
            let inputs = &mut inputs[..16 * n * cin];
            let products = &mut products[..16 * n * cout];
            self.kernels.arch().dispatch(Windows { conv: self, tiles: block.clone(), inputs });
            // Window position `i` of every tile: one of each tile's 16 rows
            // of channels, `16 * CIN` values apart.
            for i in 0..16 {
                let panels =
                    Panels::written(&self.weights[i * cin * cout..][..cin * cout], cin, cout, self.kernels);
                let a = MatRef::block(&inputs[i * cin..], n, cin, 16 * cin);
                for (column, b) in panels.iter() {
                    let c = MatMut::block(&mut products[i * cout + column..], n, b.cols, 16 * cout);
                    gemm_narrow::multiply(a, b, c, Finish::default(), self.kernels);
                }
            }
            let out = out.reborrow();
            self.kernels.arch().dispatch(Pixels { conv: self, tiles: block, products, out, first_pixel });
        }
    }

    /// The first output pixel (counted over all images) of `tile`: the
    /// pool's pixel that is the tile, if pooled.
    fn first_pixel(&self, tile: usize) -> usize {
        if self.pooled.is_some() {
            return tile;
        }
        let (across, down) = self.tiles();
        let (image, ty, tx) = (tile / (across * down), tile / across % down, tile % across);
        let (oh, ow) = (self.g.height.output, self.g.width.output);
        (image * oh + 2 * ty) * ow + 2 * tx
    }
}

/// The lanes of a vector of `S`.
fn lanes<S: Simd>() -> usize {
    size_of::<S::f32s>() / size_of::<f32>()
}

/// `G g` on a column or row of three values of the kernel: the transform
/// of the weights.
#[inline(always)]
fn weight_four<S: Simd>(simd: S, half: S::f32s, a: S::f32s, b: S::f32s, c: S::f32s) -> [S::f32s; 4] {
    let (sum, difference) = (simd.add_f32s(a, c), simd.sub_f32s(a, b));
    [a, simd.mul_f32s(half, simd.add_f32s(sum, b)), simd.mul_f32s(half, simd.add_f32s(difference, c)), c]
}

/// `B^T d B` on a column or row of four: the transform of the input windows.
#[inline(always)]
fn input_four<S: Simd>(simd: S, [d0, d1, d2, d3]: [S::f32s; 4]) -> [S::f32s; 4] {
    [simd.sub_f32s(d0, d2), simd.add_f32s(d1, d2), simd.sub_f32s(d2, d1), simd.sub_f32s(d1, d3)]
}

/// `A^T m A` on a column or row of four: the products back into two pixels.
#[inline(always)]
fn output_four<S: Simd>(simd: S, [m0, m1, m2, m3]: [S::f32s; 4]) -> [S::f32s; 2] {
    [simd.add_f32s(simd.add_f32s(m0, m1), m2), simd.sub_f32s(simd.sub_f32s(m1, m2), m3)]
}

/// The transformed input windows of `tiles`, into `inputs`: matrix `i`
/// (a position in the window) `[tiles x CIN]`, one after another.
struct Windows<'a> {
    conv: &'a Convolution<'a>,
    tiles: Range<usize>,
    inputs: &'a mut [f32],
}

impl WithSimd for Windows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Windows { conv, tiles, inputs } = self;
        let (g, lanes) = (conv.g, lanes::<S>());
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let (across, down) = conv.tiles();
        for (t, tile) in tiles.enumerate() {
            let (image, ty, tx) = (tile / (across * down), tile / across % down, tile % across);
            // Where each row and column of the window is in the image, if
            // it is: taps 0 to 3 of the window of the tile's first pixel.
            let rows: [Option<usize>; 4] = std::array::from_fn(
                #[inline(always)]
                |i| h.tap(2 * ty, i),
            );
            let columns: [Option<usize>; 4] = std::array::from_fn(
                #[inline(always)]
                |j| w.tap(2 * tx, j),
            );
            let image = &conv.x[image * g.input_len()..][..g.input_len()];
            let window = &mut inputs[t * 16 * cin..][..16 * cin];
            // The window's 16 vectors of channels from `c`, transformed
            // into the tile's 16 rows. Straight-line code by macros:
            // arrays of vectors indexed in loops stay on the stack, and
            // closures are compiled apart from the vector code, calling
            // its intrinsics.
            macro_rules! transform {
                ($c:expr, $len:expr, $value:ident) => {{
                    let (c, len) = ($c, $len);
                    macro_rules! row {
                        ($i:expr) => {
                            input_four(simd, [$value!($i, 0), $value!($i, 1), $value!($i, 2), $value!($i, 3)])
                        };
                    }
                    let d = [row!(0), row!(1), row!(2), row!(3)];
                    macro_rules! put_column {
                        ($j:expr) => {
                            let column = input_four(simd, [d[0][$j], d[1][$j], d[2][$j], d[3][$j]]);
                            for (i, v) in column.into_iter().enumerate() {
                                gemm_narrow::store(simd, &mut window[(i * 4 + $j) * cin + c..][..len], v);
                            }
                        };
                    }
                    put_column!(0);
                    put_column!(1);
                    put_column!(2);
                    put_column!(3);
                }};
            }
            if let (Some(y), Some(x), Some(_), Some(_)) = (rows[0], columns[0], rows[3], columns[3]) {
                // Inside the image: each row of the window one run of it.
                let run = |i: usize| &image[((y + i) * w.input + x) * cin..][..4 * cin];
                let runs = [run(0), run(1), run(2), run(3)];
                for c in (0..cin).step_by(lanes) {
                    let len = lanes.min(cin - c);
                    macro_rules! inside {
                        ($i:expr, $j:expr) => {
                            load(simd, &runs[$i][$j * cin + c..][..len])
                        };
                    }
                    transform!(c, len, inside);
                }
                continue;
            }
            // Each window position's channels, or none where it is padding.
            let pixel = |i: usize, j: usize| match (rows[i], columns[j]) {
                (Some(y), Some(x)) => Some(&image[(y * w.input + x) * cin..][..cin]),
                _ => None,
            };
            let row = |i: usize| [pixel(i, 0), pixel(i, 1), pixel(i, 2), pixel(i, 3)];
            let pixels = [row(0), row(1), row(2), row(3)];
            for c in (0..cin).step_by(lanes) {
                let len = lanes.min(cin - c);
                macro_rules! padded {
                    ($i:expr, $j:expr) => {
                        match pixels[$i][$j] {
                            Some(pixel) => load(simd, &pixel[c..][..len]),
                            None => simd.splat_f32s(0.0),
                        }
                    };
                }
                transform!(c, len, padded);
            }
        }
    }
}

/// The products of `tiles` transformed back into their pixels of `out`
/// (from output pixel `first_pixel`), through the layer's finish.
struct Pixels<'a, 'o> {
    conv: &'a Convolution<'a>,
    tiles: Range<usize>,
    products: &'a [f32],
    out: Slots<'o>,
    first_pixel: usize,
}

impl WithSimd for Pixels<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Pixels { conv, tiles, products, mut out, first_pixel } = self;
        let (g, lanes) = (conv.g, lanes::<S>());
        let (oh, ow, cout) = (g.height.output, g.width.output, g.out_channels);
        let (across, down) = conv.tiles();
        let (finish, pooled) = (conv.finish, conv.pooled.is_some());
        // The activation matched once for the block, not for each vector;
        // a missing scale or shift as 1 or 0 in one multiply-add.
        macro_rules! pixels {
            ($activation:expr) => {
                for (t, tile) in tiles.clone().enumerate() {
                    let (ty, tx) = (tile / across % down, tile % across);
                    let first = conv.first_pixel(tile) - first_pixel;
                    let products = &products[t * 16 * cout..][..16 * cout];
                    for c in (0..cout).step_by(lanes) {
                        let len = lanes.min(cout - c);
                        macro_rules! row {
                            ($i:expr) => {
                                output_four(
                                    simd,
                                    [
                                        load(simd, &products[($i * 4) * cout + c..][..len]),
                                        load(simd, &products[($i * 4 + 1) * cout + c..][..len]),
                                        load(simd, &products[($i * 4 + 2) * cout + c..][..len]),
                                        load(simd, &products[($i * 4 + 3) * cout + c..][..len]),
                                    ],
                                )
                            };
                        }
                        let m = [row!(0), row!(1), row!(2), row!(3)];
                        let scale = match finish.scale {
                            Some(scale) => load(simd, &scale[c..][..len]),
                            None => simd.splat_f32s(1.0),
                        };
                        let shift = match finish.shift {
                            Some(shift) => load(simd, &shift[c..][..len]),
                            None => simd.splat_f32s(0.0),
                        };
                        let [y00, y10] = output_four(simd, [m[0][0], m[1][0], m[2][0], m[3][0]]);
                        let [y01, y11] = output_four(simd, [m[0][1], m[1][1], m[2][1], m[3][1]]);
                        macro_rules! finished {
                            ($y:expr) => {
                                activate(simd, $activation, simd.mul_add_f32s($y, scale, shift))
                            };
                        }
                        let finished = [[finished!(y00), finished!(y01)], [finished!(y10), finished!(y11)]];
                        let inside = |i: usize, j: usize| 2 * ty + i < oh && 2 * tx + j < ow;
                        if pooled {
                            // The window's pixels in the pool's order, as it combines them.
                            let mut max = Max::start(simd);
                            macro_rules! take {
                                ($i:expr, $j:expr) => {
                                    if inside($i, $j) {
                                        max = Max::take(simd, max, finished[$i][$j]);
                                    }
                                };
                            }
                            take!(0, 0);
                            take!(0, 1);
                            take!(1, 0);
                            take!(1, 1);
                            let y = Max::output(simd, max, 4);
                            out.part(first * conv.ldc + conv.offset + c, len).store::<S::f32s>(0, y);
                            continue;
                        }
                        macro_rules! put {
                            ($i:expr, $j:expr) => {
                                if inside($i, $j) {
                                    let pixel = first + $i * ow + $j;
                                    let y = finished[$i][$j];
                                    out.part(pixel * conv.ldc + conv.offset + c, len).store::<S::f32s>(0, y);
                                }
                            };
                        }
                        put!(0, 0);
                        put!(0, 1);
                        put!(1, 0);
                        put!(1, 1);
                    }
                }
            };
        }
        match finish.activation {
            None => pixels!(None),
            Some(Activation::Relu) => pixels!(Some(Activation::Relu)),
            Some(Activation::Relu6) => pixels!(Some(Activation::Relu6)),
            Some(Activation::LeakyRelu(alpha)) => pixels!(Some(Activation::LeakyRelu(alpha))),
            Some(_) => unreachable!("Finish::takes admits the piecewise-linear activations only"),
        }
    }
}
