//! 2-D convolution, tile by tile of output pixels, each tile's epilogue
//! (bias, batchnorm, activation) applied while it is in cache: by the GEMM
//! kernel as it stores its sums, where it can. Without
//! groups or dilation across, on x86 with AVX2 or AVX-512, the GEMM reads
//! each pixel's patch from the input in place (padded once per call);
//! otherwise im2col packs the tile's patches for one GEMM per group; with
//! at most 8 output channels a group, the direct kernel of
//! [`crate::direct`] takes the tile; a 3x3 conv of stride 1 with 16
//! channels or more in and out goes by [`crate::winograd`] instead, 2x2
//! output pixels at a time. The tiles of a batch are shared
//! between rayon's threads; each output row is computed the same way
//! whatever the thread count, so results are bit-identical. The backward
//! pass is in [`backward`].

use cnn_shape::{Activation, Axis, ConvGeometry, Node, Op};
use ndarray::{Array1, Array4, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4, Ix1, Ix4};
use rayon::prelude::*;

use super::epilogue::activate_columns;
use super::{Destination, Epilogue, MaxPool2d, tensor};
use crate::Error;
use crate::cpu::Kernels;
use crate::gemm::{MatMut, MatRef};
use crate::gemm_narrow::{self, Finish, Panels};
use crate::im2col::{SLACK, im2col_tile};
use crate::init::{self, InitRng};
use crate::workspace::{Slot, overwritten, split_among_threads};
use crate::{direct, winograd};

mod backward;

/// How many bytes of im2col panel one tile may fill: it should stay in L2.
const TILE_BYTES: usize = 256 * 1024;

/// How many bands of rows of tiles each thread that shares a single
/// image's Winograd conv takes, one at a time: a thread the machine slows
/// down leaves the others less to wait for.
const WINOGRAD_BANDS_A_THREAD: usize = 2;

/// What the kernels ask of a geometry.
trait Tiling {
    fn is_pointwise(&self) -> bool;
    fn tile_rows(&self) -> usize;
}

impl Tiling for ConvGeometry {
    /// A 1x1, stride 1, unpadded, ungrouped convolution: a plain GEMM on the input.
    fn is_pointwise(&self) -> bool {
        let plain = |a: &Axis| a.kernel == 1 && a.stride == 1 && a.pad_before == 0 && a.pad_after == 0;
        plain(&self.height) && plain(&self.width) && self.groups == 1
    }

    /// Output rows (pixels) per tile, so that a tile's im2col panel and its
    /// output each fit `TILE_BYTES`, and the output stays in L2 from its
    /// kernel's stores to its epilogue. A multiple of the rows the GEMM
    /// kernels take at once, so that only the batch's last tile has a tail.
    fn tile_rows(&self) -> usize {
        let rows = gemm_narrow::ROW_MULTIPLE;
        let widest = self.patch_len().max(self.out_channels);
        (TILE_BYTES / (4 * widest) / rows * rows).max(rows)
    }
}

/// A conv's weights as its kernels read them, laid out once for all the
/// tiles, chunks and threads of a pass ([`Conv2d::lay_out`]): an ungrouped
/// conv's on the GEMM kernel in its [`Panels`], a grouped conv's from a
/// cache line's boundary; for the direct kernel, which reads them in
/// place, where in its panel it reads each tap.
#[derive(Clone, Debug, Default)]
pub(crate) struct LaidOut {
    /// From a cache line's boundary on ([`tensor::line_aligned`]).
    values: Vec<f32>,
    /// A direct conv's taps, where its kernel reads each ([`direct::tap_offsets`]).
    taps: Vec<usize>,
    kernels: Kernels,
    /// The [`Conv2d::version`] of the weights laid out, 0 for none: a
    /// pass lays them out again only after they change, where Winograd's
    /// transforms of ResNet-18's weights (16 values for 9, 78 MB) cost a
    /// single image's pass more than a third of its time.
    version: u64,
}

/// A conv's input images: as they are, or padded by
/// [`Conv2d::pad_input`].
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    Images(&'a [f32]),
    Padded(&'a [f32]),
}

/// A 2-D convolution, `nn.Conv2d`. Its tensors can be read and changed
/// through views, but not given another shape: the geometry the macro
/// checked holds for as long as the layer lives.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[KH, KW, CIN/G, COUT]`, in standard layout: read as a
    /// `[KH*KW*CIN/G, COUT]` matrix, the weight of output channel `o` in
    /// group `o / (COUT/G)`.
    weight: Array4<f32>,
    /// `[COUT]`, or none for `nobias`.
    bias: Option<Array1<f32>>,
    geometry: ConvGeometry,
    /// Changes whenever the weight may have: taken from a counter at
    /// creation and at every mutable borrow of the weight.
    version: u64,
}

/// A number no conv's weights have had before.
fn next_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Conv2d {
    /// A convolution initialised as PyTorch does.
    pub fn new(geometry: ConvGeometry, bias: bool, rng: &mut InitRng) -> Conv2d {
        let g = geometry;
        let fan_in = g.patch_len();
        let weight = init::uniform(
            Ix4(g.height.kernel, g.width.kernel, g.in_channels / g.groups, g.out_channels),
            fan_in,
            rng,
        );
        let bias = bias.then(|| init::uniform(Ix1(g.out_channels), fan_in, rng));
        Conv2d { weight, bias, geometry, version: next_version() }
    }

    /// The layer of a plan node, initialised from `rng`.
    #[doc(hidden)]
    pub fn from_node(node: &Node, rng: &mut InitRng) -> Conv2d {
        let Op::Conv { geometry, bias } = node.op else {
            unreachable!("the macro pairs conv fields with conv nodes")
        };
        Conv2d::new(geometry, bias, rng)
    }

    /// A convolution with the given weights, `[KH, KW, CIN/G, COUT]` and
    /// `[COUT]`; an error names the shape that does not fit the geometry.
    pub fn from_parts(
        geometry: ConvGeometry,
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
    ) -> Result<Conv2d, Error> {
        let mut conv = Conv2d {
            weight: Array4::zeros(geometry.weight_shape()),
            bias: None,
            geometry,
            version: next_version(),
        };
        conv.set_weight(weight)?;
        if let Some(bias) = bias {
            conv.bias = Some(Array1::zeros(geometry.out_channels));
            conv.set_bias(bias)?;
        }
        Ok(conv)
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// `[KH, KW, CIN/G, COUT]`.
    pub fn weight(&self) -> ArrayView4<'_, f32> {
        self.weight.view()
    }

    /// The weight, to change in place.
    pub fn weight_mut(&mut self) -> ArrayViewMut4<'_, f32> {
        self.version = next_version();
        self.weight.view_mut()
    }

    /// Replaces the weight; an error if it is not `[KH, KW, CIN/G, COUT]`.
    pub fn set_weight(&mut self, weight: Array4<f32>) -> Result<(), Error> {
        self.version = next_version();
        tensor::replace(&mut self.weight, weight, "conv weight")
    }

    /// `[COUT]`, or `None` for a conv without bias.
    pub fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|b| b.view())
    }

    pub fn bias_mut(&mut self) -> Option<ArrayViewMut1<'_, f32>> {
        self.bias.as_mut().map(|b| b.view_mut())
    }

    /// Replaces the bias; an error if it is not `[COUT]` or the conv has none.
    pub fn set_bias(&mut self, bias: Array1<f32>) -> Result<(), Error> {
        let current = self.bias.as_mut().ok_or(Error::NoBias { layer: "conv" })?;
        tensor::replace(current, bias, "conv bias")
    }

    /// Its weights laid out for `kernels` into `into`, for [`run`](Self::run),
    /// unless they are there already.
    pub(crate) fn lay_out(&self, kernels: Kernels, into: &mut LaidOut) {
        if (into.version, into.kernels) == (self.version, kernels) {
            return;
        }
        let g = &self.geometry;
        let weight = tensor::values(&self.weight);
        (into.kernels, into.version) = (kernels, self.version);
        if direct::is_direct(g, kernels) {
            into.values.clear();
            return direct::tap_offsets(g, &mut into.taps);
        }
        if winograd::applies(g, kernels) {
            let target = tensor::line_aligned(&mut into.values, winograd::laid_out_len(g));
            return winograd::lay_out(weight, g, kernels, target);
        }
        let target = tensor::line_aligned(&mut into.values, weight.len());
        if g.groups == 1 {
            Panels::new(MatRef::row_major(weight, g.patch_len(), g.out_channels), kernels, target);
        } else {
            target.copy_from_slice(weight);
        }
    }

    /// Whether [`run`](Self::run) can write into columns of wider rows
    /// (`Destination::Columns`): every path but the direct one.
    pub(crate) fn writes_columns(&self, kernels: Kernels) -> bool {
        !direct::is_direct(&self.geometry, kernels)
    }

    /// The images `x` padded as [`run`](Self::run) would pad them before
    /// reading its patches from them, where it would, in a buffer of the
    /// training step's: a training step keeps them for the weight gradient,
    /// which reads the same patches, rather than padding them twice.
    pub(crate) fn pad_input(&self, x: &[f32], kernels: Kernels) -> Option<Vec<f32>> {
        let g = &self.geometry;
        (reads_own_patches(g, kernels) && is_padded(g)).then(|| {
            let images = x.len() / g.input_len().max(1);
            let mut padded = overwritten(images * padded_geometry(g).input_len());
            pad(x, g, &mut padded);
            padded
        })
    }

    /// The weight and bias as slices, for the kernels and the optimizer.
    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        self.version = next_version();
        std::iter::once(tensor::values_mut(&mut self.weight))
            .chain(self.bias.as_mut().map(tensor::values_mut))
            .collect()
    }

    pub(crate) fn bias_values(&self) -> Option<&[f32]> {
        self.bias.as_ref().map(tensor::values)
    }

    /// Convolves a batch `(N, H, W, CIN)` into `(N, OH, OW, COUT)`, bias added;
    /// an error for an input of another shape.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Result<Array4<f32>, Error> {
        self.forward_with(x, Kernels::Fastest)
    }

    /// [`forward`](Self::forward) through the given kernels, for tests.
    #[doc(hidden)]
    pub fn forward_with(&self, x: ArrayView4<'_, f32>, kernels: Kernels) -> Result<Array4<f32>, Error> {
        let g = &self.geometry;
        tensor::check_input(&x, [g.height.input, g.width.input, g.in_channels], "conv")?;
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        // NaN until written: a value a kernel skips shows in the output.
        let mut out = vec![f32::NAN; n * g.output_len()];
        let epilogue = Epilogue::new(self.bias_values(), None, None);
        let x = x.as_slice().expect("standard layout is contiguous");
        self.run(x, &mut out, &mut Vec::new(), (&epilogue, None), kernels, Destination::Whole);
        Ok(Array4::from_shape_vec((n, g.height.output, g.width.output, g.out_channels), out)
            .expect("output length is n*oh*ow*cout"))
    }

    /// Convolves the images in `x` (NHWC, contiguous) into `out`, applying
    /// `epilogue` (which should hold the bias) to each tile, reading the
    /// weights as [`lay_out`](Self::lay_out) laid them out for `kernels`,
    /// or laying them out first if not given. `scratch` holds one im2col
    /// buffer per thread, grown as needed and kept for next time.
    ///
    /// # Panics
    ///
    /// If the lengths of `x` and `out` are not whole images of the geometry,
    /// the weights do not have its shape, or were laid out for other kernels.
    pub(crate) fn run<T: Slot>(
        &self,
        x: &[f32],
        out: &mut [T],
        scratch: &mut Vec<Vec<f32>>,
        prepared: (&Epilogue, Option<&LaidOut>),
        kernels: Kernels,
        destination: Destination<'_>,
    ) {
        self.run_input(Input::Images(x), out, scratch, prepared, kernels, (None, destination))
    }

    /// Whether [`run_input`](Self::run_input) takes `pool` after this conv
    /// with `epilogue`: a `maxpool 2` (2x2 windows of stride 2, unpadded)
    /// after a conv that Winograd's tiles compute, with an epilogue the
    /// kernels apply whole (the max of a `tanh` or `gelu` is not their
    /// value at the max of their inputs). Each tile is then pooled into
    /// the pool's pixel as it is computed: the same values as the two
    /// layers one after the other.
    pub(crate) fn pools_by_winograd(&self, pool: &MaxPool2d, epilogue: &Epilogue, kernels: Kernels) -> bool {
        let two =
            |a: Axis| a.kernel == 2 && a.stride == 2 && a.dilation == 1 && a.pad_before + a.pad_after == 0;
        winograd::applies(&self.geometry, kernels)
            && two(pool.height)
            && two(pool.width)
            && pool.height.input == self.geometry.height.output
            && pool.width.input == self.geometry.width.output
            && epilogue.finish().1.is_none()
    }

    /// [`run`](Self::run) on images as they are or as
    /// [`pad_input`](Self::pad_input) padded them, and followed by `pool`
    /// if given, `out` then the pool's output.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run), if padded images are given to a conv that
    /// does not read its patches from them, and if the conv does not
    /// [`pools_by_winograd`](Self::pools_by_winograd) with `pool`.
    pub(crate) fn run_input<T: Slot>(
        &self,
        input: Input<'_>,
        out: &mut [T],
        scratch: &mut Vec<Vec<f32>>,
        (epilogue, laid_out): (&Epilogue, Option<&LaidOut>),
        kernels: Kernels,
        (pool, destination): (Option<&MaxPool2d>, Destination<'_>),
    ) {
        let g = &self.geometry;
        let (x, image_len) = match input {
            Input::Images(x) => (x, g.input_len()),
            Input::Padded(x) => (x, padded_geometry(g).input_len()),
        };
        let n = x.len() / image_len.max(1);
        let cout = g.out_channels;
        // Rows of `ldc` values, this conv's channels from `offset` on.
        let (ldc, offset) = match destination {
            Destination::Columns { stride, offset } => (stride, offset),
            _ => (cout, 0),
        };
        let pixels = match pool {
            Some(pool) => pool.height.output * pool.width.output,
            None => g.height.output * g.width.output,
        };
        assert!(x.len() == n * image_len && out.len() == n * pixels * ldc, "conv input or output length");
        assert!(offset + cout <= ldc, "conv output columns");
        // Zeroing a tile of fresh values would zero other layers' columns.
        assert!(!T::FRESH || ldc == cout, "fresh values of a concat");
        let weight = tensor::values(&self.weight);
        assert_eq!(weight.len(), g.patch_len() * g.out_channels, "conv weight shape");
        let rows = n * g.height.output * g.width.output;
        if rows == 0 {
            return;
        }
        let pools = pool.is_none_or(|pool| self.pools_by_winograd(pool, epilogue, kernels));
        assert!(pools, "conv: a pool its tiles do not take");
        // The GEMM reads patches from the input padded once, kept in the
        // scratch slot past the threads', and weights not laid out before
        // are laid out in the slot after.
        let slot = rayon::current_num_threads();
        if scratch.len() <= slot + 1 {
            scratch.resize_with(slot + 2, Vec::new);
        }
        let mut own = LaidOut { values: std::mem::take(&mut scratch[slot + 1]), ..LaidOut::default() };
        let laid_out = laid_out.unwrap_or_else(|| {
            self.lay_out(kernels, &mut own);
            &own
        });
        assert_eq!(laid_out.kernels, kernels, "conv weights laid out for other kernels");
        let laid = |len: usize| &laid_out.values[tensor::to_line(&laid_out.values)..][..len];
        if winograd::applies(g, kernels) {
            let (x, g_in) = match input {
                Input::Images(x) => (x, *g),
                Input::Padded(x) => (x, padded_geometry(g)),
            };
            let weights = laid(winograd::laid_out_len(g));
            let (finish, left) = epilogue.finish();
            let pooled = pool.map(|pool| (pool.height.output, pool.width.output));
            let conv = winograd::Convolution { g: &g_in, x, weights, finish, kernels, ldc, offset, pooled };
            self.by_winograd(&conv, n, out, scratch, (left, destination));
            scratch[slot + 1] = own.values;
            return;
        }
        let tile_rows = g.tile_rows().min(rows);
        let direct = direct::is_direct(g, kernels);
        assert!(!direct || ldc == cout, "the direct conv writes whole rows");
        let patches = reads_own_patches(g, kernels);
        let panel_len = if direct {
            direct::scratch_len(g)
        } else if g.is_pointwise() || patches {
            0
        } else {
            tile_rows * g.patch_len() + SLACK
        };
        let padded = &mut std::mem::take(&mut scratch[slot]);
        let (weight, panels) = match (direct, g.groups) {
            (true, _) => (weight, None),
            (false, 1) => (weight, Some(Panels::written(laid(weight.len()), g.patch_len(), cout, kernels))),
            (false, _) => (laid(weight.len()), None),
        };
        let (x, g_in) = match (input, patches) {
            (Input::Images(_), true) => pad(x, g, padded),
            (Input::Images(_), false) => (x, *g),
            (Input::Padded(_), true) => (x, padded_geometry(g)),
            (Input::Padded(_), false) => panic!("conv: padded images for a conv that reads no patches"),
        };
        let g_in = &g_in;
        // Whole tiles, shared between the threads.
        split_among_threads(out, tile_rows * ldc, scratch, |tile, out_tile, col| {
            if col.len() < panel_len {
                col.resize(panel_len, 0.0);
            }
            let start = tile * tile_rows;
            let rows = start..start + out_tile.len() / ldc;
            let out_tile = if direct {
                let out_tile = T::values(out_tile);
                direct::direct_tile(
                    direct::Conv { g, weight, epilogue, kernels, taps: &laid_out.taps },
                    x,
                    rows.clone(),
                    out_tile,
                    col,
                );
                out_tile
            } else {
                let (finish, left) = epilogue.finish();
                match (patches, &panels) {
                    (true, Some(panels)) => {
                        let out = (&mut out_tile[offset..], rows.len(), ldc);
                        by_panels(panels, out, finish, |b, c, finish| {
                            gemm_narrow::multiply_patches(x, g_in, rows.clone(), b, c, finish, kernels)
                        })
                    }
                    _ => self.tile(
                        (x, weight, panels.as_ref()),
                        rows.clone(),
                        (&mut *out_tile, ldc, offset),
                        col,
                        (finish, kernels),
                    ),
                }
                // SAFETY: the GEMMs above wrote each value of their C (each
                // panel its columns, each group its own), which covers this
                // conv's columns of the tile; fresh values have no others
                // (asserted above).
                #[allow(unsafe_code)]
                let out_tile = unsafe { T::slots(out_tile).into_written() };
                activate_columns(left, out_tile, ldc, offset..offset + cout);
                out_tile
            };
            if let Destination::AddTo(residual) = destination {
                residual.apply(out_tile, start * cout, cout);
            }
        });
        (scratch[slot], scratch[slot + 1]) = (std::mem::take(padded), own.values);
    }

    /// The `n` images of `conv` into `out` by [`winograd`]: all of them at
    /// once where one thread runs the conv, else an image or (of a single
    /// image) a band of rows of tiles a thread at a time.
    fn by_winograd<T: Slot>(
        &self,
        conv: &winograd::Convolution<'_>,
        n: usize,
        out: &mut [T],
        scratch: &mut Vec<Vec<f32>>,
        (left, destination): (Option<Activation>, Destination<'_>),
    ) {
        let g = &self.geometry;
        // The output's pixels, and their rows a row of tiles.
        let ((oh, ow), rows_a_tile) = match conv.pooled {
            Some(pooled) => (pooled, 1),
            None => ((g.height.output, g.width.output), 2),
        };
        let (cout, (ldc, offset)) = (g.out_channels, (conv.ldc, conv.offset));
        let (_, down) = conv.tiles();
        let tile_rows = match (crate::workspace::sharing_threads(), n) {
            (1, _) => n * down,
            (_, 2..) => down,
            (threads, _) => down.div_ceil(threads * WINOGRAD_BANDS_A_THREAD),
        };
        // The output values of `tile_rows` rows of tiles: whole images, or
        // two rows of pixels a row of tiles, one if pooled (the last band
        // of an image with an odd height has one).
        let unit_len = match tile_rows % down {
            0 => tile_rows / down * oh * ow * ldc,
            _ => rows_a_tile * tile_rows * ow * ldc,
        };
        let len = winograd::scratch_len(g);
        split_among_threads(out, unit_len, scratch, |unit, out, col| {
            if col.len() < len {
                col.resize(len, 0.0);
            }
            let rows = unit * tile_rows..((unit + 1) * tile_rows).min(n * down);
            conv.convolve(rows.clone(), T::slots(&mut *out), col);
            // SAFETY: the tiles' pixels are the unit's, and `convolve`
            // wrote this conv's columns of each; fresh values have no
            // others (asserted in `run_input`).
            #[allow(unsafe_code)]
            let out = unsafe { T::slots(out).into_written() };
            activate_columns(left, out, ldc, offset..offset + cout);
            if let Destination::AddTo(residual) = destination {
                let first_pixel = rows.start / down * oh * ow + rows.start % down * rows_a_tile * ow;
                residual.apply(out, first_pixel * cout, cout);
            }
        });
    }

    /// Output rows `rows` into `out` (`rows.len() * COUT` values), from
    /// the weights in panels if the conv is ungrouped.
    fn tile<'f, T: Slot>(
        &self,
        (x, weight, panels): (&[f32], &[f32], Option<&Panels<'_>>),
        rows: std::ops::Range<usize>,
        (out, ldc, offset): (&mut [T], usize, usize),
        col: &mut [f32],
        (finish, kernels): (Finish<'f>, Kernels),
    ) {
        let g = &self.geometry;
        let (cout, len) = (g.out_channels, rows.len());
        let out = &mut out[offset..];
        let multiply_by_panels = |a: MatRef<'_>, panels: &Panels<'_>, out: &mut [T]| {
            by_panels(panels, (out, len, ldc), finish, |b, c, finish| {
                gemm_narrow::multiply(a, b, c, finish, kernels)
            })
        };
        if let (true, Some(panels)) = (g.is_pointwise(), panels) {
            let cin = g.in_channels;
            let a = MatRef::row_major(&x[rows.start * cin..rows.end * cin], len, cin);
            return multiply_by_panels(a, panels, out);
        }
        let patch = g.patch_len();
        let cout_g = cout / g.groups;
        let col = &mut col[..len * patch + SLACK];
        for group in 0..g.groups {
            im2col_tile(x, g, group, rows.clone(), col);
            let a = MatRef::row_major(col, len, patch);
            if let Some(panels) = panels {
                multiply_by_panels(a, panels, out);
                continue;
            }
            let b = MatRef::block(&weight[group * cout_g..], patch, cout_g, cout);
            let c = MatMut::block(&mut out[group * cout_g..], len, cout_g, ldc);
            gemm_narrow::multiply(a, b, c, finish.columns(group * cout_g), kernels);
        }
    }
}

/// `gemm(b, c, finish)` for each panel `b` of `panels`, `c` the columns of
/// `out` (`rows` of them, `ldc` apart) that it fills.
fn by_panels<T>(
    panels: &Panels<'_>,
    (out, rows, ldc): (&mut [T], usize, usize),
    finish: Finish<'_>,
    mut gemm: impl FnMut(MatRef<'_>, MatMut<'_, T>, Finish<'_>),
) {
    for (first, b) in panels.iter() {
        gemm(b, MatMut::block(&mut out[first..], rows, b.cols, ldc), finish.columns(first));
    }
}

/// Whether [`Conv2d::run`] convolves `g` by the GEMM that reads its
/// patches from the input in place (padded once if it pads), not by the
/// direct kernel, a plain GEMM (pointwise) or im2col.
fn reads_own_patches(g: &ConvGeometry, kernels: Kernels) -> bool {
    !direct::is_direct(g, kernels) && !g.is_pointwise() && gemm_narrow::reads_patches(g, kernels)
}

/// Whether `g`'s windows read any padding.
fn is_padded(g: &ConvGeometry) -> bool {
    let padded = padded_geometry(g);
    (padded.height.input, padded.width.input) != (g.height.input, g.width.input)
}

/// The geometry of convolving `g`'s images padded, without padding: the
/// same windows. The padding after the input goes as far as the windows
/// read: none where they stop short of it (its last row or column, often,
/// of a strided conv), more where they read past it (of an axis whose
/// output was rounded up).
fn padded_geometry(g: &ConvGeometry) -> ConvGeometry {
    let unpad = |a: Axis| {
        let read = (a.output.max(1) - 1) * a.stride + (a.kernel - 1) * a.dilation + 1;
        let input = (a.pad_before + a.input).max(read);
        Axis { input, pad_before: 0, pad_after: 0, ..a }
    };
    ConvGeometry { height: unpad(g.height), width: unpad(g.width), ..*g }
}

/// The longest row of an image (values) that [`pad`] zeroes whole.
const SHORT_ROW: usize = 256;

/// The images `x` with their padding written out as zeros, in `padded`,
/// and the geometry of convolving them without padding: the same windows.
/// Images that need no padding are returned as they are.
fn pad<'a>(x: &'a [f32], g: &ConvGeometry, padded: &'a mut Vec<f32>) -> (&'a [f32], ConvGeometry) {
    let (h, w, cin) = (g.height, g.width, g.in_channels);
    let to = padded_geometry(g);
    if !is_padded(g) {
        return (x, to);
    }
    let images = x.len() / g.input_len();
    padded.resize(images * to.input_len(), 0.0);
    // Each value written once, the padding as zeros and the rest copied;
    // but an image of short rows is zeroed whole and then its rows copied:
    // a call to memset for each side of a row costs more than zeroing the
    // inside too.
    let (row_len, padded_row_len) = (w.input * cin, to.width.input * cin);
    let zero_whole = row_len <= SHORT_ROW;
    // Rows of the image into the padded rows between the top and bottom padding.
    let pad_rows = |(rows, target): (&[f32], &mut [f32])| {
        for (row, target) in rows.chunks_exact(row_len).zip(target.chunks_exact_mut(padded_row_len)) {
            let (left, rest) = target.split_at_mut(w.pad_before * cin);
            let (inside, right) = rest.split_at_mut(row_len);
            inside.copy_from_slice(row);
            if !zero_whole {
                left.fill(0.0);
                right.fill(0.0);
            }
        }
    };
    // A single image's rows shared between the threads that share the
    // conv (not those of a chunk of a pass, which run alone).
    let threads = crate::workspace::sharing_threads();
    let rows_a_part = h.input.div_ceil(2 * threads).max(1);
    let pad_image = |(image, target): (&[f32], &mut [f32])| {
        if zero_whole {
            target.fill(0.0);
        }
        let (top, rest) = target.split_at_mut(h.pad_before * padded_row_len);
        let (middle, bottom) = rest.split_at_mut(h.input * padded_row_len);
        if !zero_whole {
            top.fill(0.0);
            bottom.fill(0.0);
        }
        match images == 1 && threads > 1 {
            true => image
                .par_chunks(rows_a_part * row_len)
                .zip(middle.par_chunks_mut(rows_a_part * padded_row_len))
                .for_each(pad_rows),
            false => pad_rows((image, middle)),
        }
    };
    let (from, to_len) = (g.input_len(), to.input_len());
    // Images on every thread sharing the conv (a single image by rows,
    // above); none but this one inside a chunk of a pass.
    match images > 1 && threads > 1 {
        true => x.par_chunks_exact(from).zip(padded.par_chunks_exact_mut(to_len)).for_each(pad_image),
        false => x.chunks_exact(from).zip(padded.chunks_exact_mut(to_len)).for_each(pad_image),
    }
    (padded, to)
}
