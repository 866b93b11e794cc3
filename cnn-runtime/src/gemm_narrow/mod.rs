//! `C = A B` for the forward pass of convolutions and dense layers: B the
//! weights `[K x COUT]`, A either a row-major matrix (an im2col tile, a
//! dense layer's input) or the patches of a conv's output pixels, read
//! from the input itself: without groups or dilation across, each kernel
//! row of a patch is one run of the NHWC input. A conv's weight gradient
//! reads the transpose of its patches in place the same way (a tap's
//! values over an output row lie a stride apart, B the output's
//! gradient `[OH*OW x COUT]`). A is never packed; a
//! conv's B is copied once a pass into [`Panels`], as wide as the kernel
//! takes at once, so that the rows it reads lie next to each other.
//!
//! matrixmultiply packs both operands on every call: an im2col tile a
//! second time, the weights once per tile. Its 16x16 kernel also keeps only
//! 16 vectors of sums, so a patch of 27 values costs a store of them for
//! every 27 multiply-adds. Here B is narrow (a conv has tens of output
//! channels): a row of it is up to `NV` vectors loaded straight from the
//! weights, each value of A is broadcast from where it is, and `MR x NV`
//! vectors of sums stay in registers over the whole patch: up to 24 of
//! AVX-512's 32 registers, 12 of AVX2's 16. `MR` is at most 8 so that the
//! addresses of the rows of A stay in registers too; with more, the
//! compiler computes them anew for every value. On AVX2 it is 6, as x86's
//! 16 general registers hold 6 rows' addresses beside the loops' own. Each
//! sum runs over `k` in order, so the result does not depend on how the
//! rows are split between threads or images between chunks. The layer's
//! epilogue (bias, batchnorm, relu and its kin) is applied to the sums as
//! they are stored, while they are in L1, rather than in a pass of its own
//! over the output ([`Finish`]).

use std::mem::size_of;
use std::ops::Range;

use pulp::bytemuck;
use pulp::{Simd, WithSimd};

use crate::cpu::Kernels;
use crate::gemm::{MatMut, MatRef};
use crate::layers::Apply;
use crate::workspace::{Slot, Slots};
use cnn_shape::{Activation, ConvGeometry};

mod rows;

use rows::{Position, Rows, Span};

/// What tiles of rows should be a multiple of: of every `MR` below (8
/// and 6), so that only the batch's last tile has a tail.
pub const ROW_MULTIPLE: usize = 48;

/// The bytes of B that one pass over the rows of A reads, at `lanes`
/// floats a vector: the rest of L1 is for the rows of A and C streaming
/// past. Wider B is taken in parts of its rows (of `k`); each part costs a
/// load and a store of the sums, so parts should not be smaller than they
/// need to be. With AVX-512 (whose CPUs since Ice Lake have a 48 KiB L1)
/// two thirds of L1, measured faster there than a third; with AVX2 half of
/// a 32 KiB L1.
fn b_part_bytes(lanes: usize) -> usize {
    match lanes {
        16 => 32 * 1024,
        _ => 16 * 1024,
    }
}

/// Whether the kernel here runs: on x86 with AVX2 + FMA or AVX-512.
/// Elsewhere matrixmultiply's kernels are the better choice.
fn available(kernels: Kernels) -> bool {
    cfg!(any(target_arch = "x86", target_arch = "x86_64")) && crate::cpu::has_fma(kernels)
}

/// `c = a * b`, each a row-major block (unit column stride): by the kernel
/// here where it runs, else by matrixmultiply. A `c` of fresh values is
/// written without being read, unless `finish` accumulates.
///
/// # Panics
///
/// If the dimensions disagree, a matrix does not fit in its slice, a
/// column stride is not 1 or fresh values are to be accumulated onto: bugs
/// of the caller, never of user input.
pub fn multiply<T: Slot>(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: MatMut<'_, T>,
    finish: Finish<'_>,
    kernels: Kernels,
) {
    assert!(a.col_stride == 1 && c.col_stride == 1, "gemm: strided columns");
    if !available(kernels) {
        let MatMut { data, rows, cols, row_stride, .. } = c;
        // matrixmultiply writes C with beta 0, but through floats.
        let data = T::values(data);
        let beta = if finish.accumulate { 1.0 } else { 0.0 };
        crate::gemm::sgemm(1.0, a, b, beta, MatMut::block(&mut *data, rows, cols, row_stride));
        return data.chunks_mut(row_stride).take(rows).for_each(|row| finish.apply(&mut row[..cols]));
    }
    let fits = a.rows == 0 || a.cols == 0 || (a.rows - 1) * a.row_stride + a.cols <= a.data.len();
    assert!(fits, "gemm: a out of bounds");
    product(Rows::Matrix(a), b, c, finish, kernels);
}

/// What the kernels do to each sum as they store it: `act(sum * scale +
/// shift)`, `scale` and `shift` one value per column of C (`None`: 1 and
/// 0), `act` only one that [`takes`](Finish::takes), a compare and a select;
/// with `accumulate`, the sums start from C's values (`C += A B`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Finish<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    pub activation: Option<Activation>,
    pub accumulate: bool,
}

impl Finish<'_> {
    /// `C += A B`, nothing else.
    pub const ACCUMULATE: Finish<'static> =
        Finish { scale: None, shift: None, activation: None, accumulate: true };
}

impl<'a> Finish<'a> {
    /// The same for the columns of C from `first` on.
    pub fn columns(&self, first: usize) -> Finish<'a> {
        let from = |v: Option<&'a [f32]>| v.map(|v| &v[first..]);
        Finish { scale: from(self.scale), shift: from(self.shift), ..*self }
    }

    /// Whether the sums are scaled, shifted or activated on their way out.
    fn changes_sums(&self) -> bool {
        self.scale.is_some() || self.shift.is_some() || self.activation.is_some()
    }

    /// Whether the kernels apply `activation` to their sums.
    pub fn takes(activation: Activation) -> bool {
        matches!(activation, Activation::Relu | Activation::Relu6 | Activation::LeakyRelu(_))
    }

    /// The same on a row of C already stored, as the epilogue computes it.
    fn apply(&self, row: &mut [f32]) {
        for (j, v) in row.iter_mut().enumerate() {
            let scaled = self.scale.map_or(*v, |s| *v * s[j]);
            *v = self.shift.map_or(scaled, |t| scaled + t[j]);
        }
        if let Some(activation) = self.activation {
            activation.apply(row, row.len());
        }
    }
}

/// `activation` on one vector; `v < 0` is false for NaN, which stays, as
/// in the scalar activations.
#[inline(always)]
pub(crate) fn activate<S: Simd>(simd: S, activation: Option<Activation>, v: S::f32s) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    match activation {
        None => v,
        Some(Activation::Relu) => simd.select_f32s(simd.less_than_f32s(v, zero), zero, v),
        Some(Activation::LeakyRelu(alpha)) => {
            let leaked = simd.mul_f32s(v, simd.splat_f32s(alpha));
            simd.select_f32s(simd.less_than_f32s(v, zero), leaked, v)
        }
        Some(Activation::Relu6) => {
            let six = simd.splat_f32s(6.0);
            let capped = simd.select_f32s(simd.greater_than_f32s(v, six), six, v);
            simd.select_f32s(simd.less_than_f32s(v, zero), zero, capped)
        }
        Some(_) => unreachable!("Finish::takes admits the piecewise-linear activations only"),
    }
}

/// A B used for many products, laid out for the kernel: its columns in
/// panels as wide as the kernel takes at once, each panel's rows one after
/// another, from a cache line's boundary. Read in place, the rows of a
/// block of B's columns are a row of B apart: 16 columns of 64, a cache
/// line every 256 bytes, fall in a quarter of L1's sets, and evict each
/// other before the next rows of A come to read them again.
#[derive(Clone, Copy)]
pub struct Panels<'a> {
    data: &'a [f32],
    k: usize,
    n: usize,
    width: usize,
}

impl<'a> Panels<'a> {
    /// `b` copied into `into` (`b`'s size) in the panels of `kernels`.
    pub fn new(b: MatRef<'_>, kernels: Kernels, into: &'a mut [f32]) -> Panels<'a> {
        let (k, n) = (b.rows, b.cols);
        assert_eq!(into.len(), k * n, "gemm: panels of another size");
        let width = Panels::width(n, kernels);
        let mut at = 0;
        for first in (0..n).step_by(width) {
            let cols = width.min(n - first);
            for row in 0..k {
                into[at..at + cols].copy_from_slice(&b.data[row * b.row_stride + first..][..cols]);
                at += cols;
            }
        }
        Panels { data: into, k, n, width }
    }

    /// The panels that [`new`](Self::new) wrote into `data` for a `k x n`
    /// B and `kernels`.
    pub fn written(data: &'a [f32], k: usize, n: usize, kernels: Kernels) -> Panels<'a> {
        assert_eq!(data.len(), k * n, "gemm: panels of another size");
        Panels { data, k, n, width: Panels::width(n, kernels) }
    }

    /// The columns of a panel of B `n` wide: one panel where the kernel
    /// here does not run.
    pub(crate) fn width(n: usize, kernels: Kernels) -> usize {
        let width = if available(kernels) { block_width(crate::cpu::lanes(kernels)) } else { n };
        width.clamp(1, n.max(1))
    }

    /// Each panel: the column of B it starts at, and its values.
    pub fn iter(&self) -> impl Iterator<Item = (usize, MatRef<'a>)> + '_ {
        (0..self.n).step_by(self.width).map(|first| {
            let cols = self.width.min(self.n - first);
            (first, MatRef::row_major(&self.data[first * self.k..][..self.k * cols], self.k, cols))
        })
    }
}

/// Whether [`multiply_patches`] can convolve `g` once padded: where the
/// kernel here runs, without groups or dilation across, so that each kernel
/// row of a patch is one run of the input.
pub fn reads_patches(g: &ConvGeometry, kernels: Kernels) -> bool {
    available(kernels) && g.groups == 1 && g.width.dilation == 1
}

/// Whether `g` [`reads_patches`] and pads nothing: each kernel row of a
/// patch is then a run of the input as it is.
fn runs_of_input(g: &ConvGeometry, kernels: Kernels) -> bool {
    let (h, w) = (g.height, g.width);
    reads_patches(g, kernels) && h.pad_before + h.pad_after + w.pad_before + w.pad_after == 0
}

/// `c = a * b` where row `i` of `a` would be the im2col patch of output
/// pixel `pixels.start + i` of the images `x`: the patches are read from
/// `x` in place, with no im2col. For an unpadded `g` that [`reads_patches`].
///
/// # Panics
///
/// If `g` does not [`reads_patches`], or the dimensions disagree.
pub fn multiply_patches(
    x: &[f32],
    g: &ConvGeometry,
    pixels: Range<usize>,
    b: MatRef<'_>,
    c: MatMut<'_, impl Slot>,
    finish: Finish<'_>,
    kernels: Kernels,
) {
    assert!(runs_of_input(g, kernels), "gemm: patches that are not runs of the input");
    assert!(x.len().is_multiple_of(g.input_len()), "gemm: x is not whole images");
    let a = Rows::Patches { x, g, first_pixel: pixels.start, pixels: pixels.len() };
    product(a, b, c, finish, kernels);
}

/// `c = a * b` where row `t` of `a` is tap `t` of `g`'s kernel (in `(ky,
/// kx, ci)` order) and its value `k` what that tap reads for output pixel
/// `k` of the image `x`: `a` is the transpose of the image's im2col matrix,
/// read in place. With `b` the output's gradient `[OH*OW, COUT]`, `c` is
/// the weight gradient in the weight's layout. For an unpadded `g` that
/// [`reads_patches`].
///
/// # Panics
///
/// If `g` does not [`reads_patches`], `x` is not one image, or the
/// dimensions disagree.
pub fn multiply_taps(
    x: &[f32],
    g: &ConvGeometry,
    b: MatRef<'_>,
    c: MatMut<'_, impl Slot>,
    finish: Finish<'_>,
    kernels: Kernels,
) {
    assert!(runs_of_input(g, kernels), "gemm: taps that are not runs of the input");
    assert_eq!(x.len(), g.input_len(), "gemm: x is not one image");
    product(Rows::Taps { x, g }, b, c, finish, kernels);
}

/// `c = finish(a * b)` on a CPU where the kernel runs.
fn product<T: Slot>(a: Rows<'_>, b: MatRef<'_>, c: MatMut<'_, T>, finish: Finish<'_>, kernels: Kernels) {
    let (m, k, n) = (a.len(), a.k(), b.cols);
    assert!(b.rows == k && c.rows == m && c.cols == n, "gemm: mismatched dimensions");
    assert!(b.col_stride == 1 && c.col_stride == 1, "gemm: strided columns");
    let fits = |len: usize, rows: usize, cols: usize, stride: usize| {
        rows == 0 || cols == 0 || (rows - 1) * stride + cols <= len
    };
    assert!(fits(b.data.len(), k, n, b.row_stride), "gemm: b out of bounds");
    assert!(fits(c.data.len(), m, n, c.row_stride), "gemm: c out of bounds");
    let per_column = |v: Option<&[f32]>| v.is_none_or(|v| v.len() >= n);
    assert!(per_column(finish.scale) && per_column(finish.shift), "gemm: finish shorter than c's rows");
    assert!(finish.activation.is_none_or(Finish::takes), "gemm: an activation the kernel does not take");
    assert!(!T::FRESH || !finish.accumulate, "gemm: accumulating onto fresh values");
    if k == 0 {
        T::values(c.data).chunks_mut(c.row_stride).take(m).for_each(|row| {
            if !finish.accumulate {
                row[..n].fill(0.0);
            }
            finish.apply(&mut row[..n]);
        });
    } else if m > 0 && n > 0 {
        let (c, ldc) = (T::slots(c.data), c.row_stride);
        kernels.arch().dispatch(Product { a, b, c, ldc, fresh: T::FRESH, finish });
    }
}

struct Product<'a> {
    a: Rows<'a>,
    b: MatRef<'a>,
    /// Written whole (by its first pass over `k`) before it is read,
    /// unless `finish` accumulates onto floats.
    c: Slots<'a>,
    ldc: usize,
    /// Whether C is a fresh output, which is not in cache.
    fresh: bool,
    finish: Finish<'a>,
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Product { a, b, mut c, ldc, fresh, finish } = self;
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        // Rows of sums per call, for 1..=4 vectors of columns.
        macro_rules! block {
            ($($nv:literal: $mr:literal),*) => {{
                let widest = block_width(lanes);
                debug_assert_eq!(widest, [$($nv),*].into_iter().max().unwrap_or(1) * lanes);
                for first in (0..b.cols).step_by(widest) {
                    let width = widest.min(b.cols - first);
                    let block = Block {
                        b: &b.data[first..],
                        ldb: b.row_stride,
                        c_first: first,
                        width,
                    };
                    match (width.div_ceil(lanes), width % lanes == 0) {
                        $(
                            ($nv, true) => block.rows::<S, $mr, $nv, true>(simd, a, (c.reborrow(), ldc, fresh), finish),
                            ($nv, false) => block.rows::<S, $mr, $nv, false>(simd, a, (c.reborrow(), ldc, fresh), finish),
                        )*
                        _ => unreachable!("a block has 1 to 4 vectors of columns"),
                    }
                }
            }};
        }
        match lanes {
            16 => block!(1: 8, 2: 8, 3: 8, 4: 6),
            8 => block!(1: 6, 2: 6),
            _ => unreachable!("available() admits 8 and 16 lanes only"),
        }
    }
}

/// The most columns of B one pass of the kernel takes, at `lanes` floats a
/// vector: the widest block of [`Product`], and the width of [`Panels`].
fn block_width(lanes: usize) -> usize {
    match lanes {
        16 => 4 * 16,
        _ => 2 * 8,
    }
}

/// Columns `c_first..c_first + width` of the product, `b` starting at the first.
struct Block<'a> {
    b: &'a [f32],
    ldb: usize,
    c_first: usize,
    width: usize,
}

impl Block<'_> {
    /// Every row of the block: `MR` at a time, then 4, 2, 1; over the
    /// pieces of `k` a few at a time, so that the rows of B they read stay
    /// in L1, each pass adding to the sums the last one stored, the last
    /// pass applying `finish`.
    #[inline(always)]
    fn rows<S: Simd, const MR: usize, const NV: usize, const FULL: bool>(
        &self,
        simd: S,
        a: Rows<'_>,
        (mut c, ldc, fresh): (Slots<'_>, usize, bool),
        finish: Finish<'_>,
    ) {
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        for (pass, (span, last)) in a.runs(self.width, lanes).passes().enumerate() {
            // Sums stored as they are where `finish` changes nothing,
            // rather than through checks of each vector's scale and shift,
            // which a product of short `k` (Winograd's) felt.
            let accumulate = pass > 0 || finish.accumulate;
            let finish = last.then_some(finish).filter(Finish::changes_sums);
            let (mut row, mut at) = (0, a.position(0));
            while row < a.len() {
                let left = a.len() - row;
                // The first pass writes a fresh C, not in cache: the next
                // block's lines are fetched while this one is computed,
                // rather than each store waiting. (A buffer used again is
                // in cache, where fetching costs time.)
                if fresh && pass == 0 && left >= 2 * MR {
                    c.prefetch_rows(row + MR..row + 2 * MR, ldc, self.c_first, self.width);
                }
                let c = (c.reborrow().from(row * ldc + self.c_first), ldc, accumulate, finish);
                let a = (a, &mut at);
                row += if left >= MR {
                    self.sums::<S, MR, NV, FULL>(simd, a, span, c)
                } else if left >= 4 {
                    self.sums::<S, 4, NV, FULL>(simd, a, span, c)
                } else if left >= 2 {
                    self.sums::<S, 2, NV, FULL>(simd, a, span, c)
                } else {
                    self.sums::<S, 1, NV, FULL>(simd, a, span, c)
                };
            }
        }
    }

    /// The `MR` rows of the block from `at`, their `MR x NV` vectors of
    /// sums in registers over the values of `k` in `span`, starting from
    /// zero or, with `accumulate`, from `c`, stored through `finish` if
    /// given. Returns `MR`.
    #[inline(always)]
    fn sums<S: Simd, const MR: usize, const NV: usize, const FULL: bool>(
        &self,
        simd: S,
        (a, at): (Rows<'_>, &mut Position),
        span: Span,
        (mut c, ldc, accumulate, finish): (Slots<'_>, usize, bool, Option<Finish<'_>>),
    ) -> usize {
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        // With FULL the compiler knows the width, and every load is whole.
        let width = if FULL { NV * lanes } else { self.width };
        let (data, starts) = (a.data(), a.starts::<MR>(at));
        let mut sums = [[simd.splat_f32s(0.0); NV]; MR];
        if accumulate {
            for (r, sums) in sums.iter_mut().enumerate() {
                // SAFETY: a pass after the first reads what the first
                // stored in these rows and columns; the first accumulates
                // onto floats only (asserted in `product`).
                #[allow(unsafe_code)]
                let c = unsafe { c.written(r * ldc, width) };
                for (j, sum) in sums.iter_mut().enumerate() {
                    *sum = load(simd, &c[j * lanes..]);
                }
            }
        }
        let a: [&[f32]; MR] = std::array::from_fn(|r| &data[starts[r] + span.a_start..][..span.extent()]);
        let b = &self.b[span.k_start * self.ldb..];
        // A partial last vector is loaded whole where B goes on past it at
        // every row (a caller may give B room past its end): its lanes
        // past the width are summed but never stored.
        let k = span.runs * span.len;
        if FULL || k == 0 || (k - 1) * self.ldb + NV * lanes <= b.len() {
            multiply_add(simd, a, span, (b, self.ldb), &mut sums);
        } else {
            for (k, at) in span.offsets().enumerate() {
                // Loaded whole where B goes on past it (pulp's masked load
                // is a call).
                let b = &b[k * self.ldb..];
                let b: [S::f32s; NV] = std::array::from_fn(
                    #[inline(always)]
                    |j| load(simd, &b[j * lanes..]),
                );
                // Each value of A a broadcast operand of its multiply-adds.
                for (sums, a) in sums.iter_mut().zip(a) {
                    let a = simd.splat_f32s(a[at]);
                    for (sum, b) in sums.iter_mut().zip(b) {
                        *sum = simd.mul_add_f32s(a, b, *sum);
                    }
                }
            }
        }
        // Each sum stored through `finish`, its activation matched once
        // here rather than for every vector.
        macro_rules! store_all {
            ($finished:expr) => {
                for (r, sums) in sums.iter().enumerate() {
                    // One bounds check a row: the width is known with FULL.
                    let mut c = c.part(r * ldc, width);
                    for (j, &sum) in sums.iter().enumerate() {
                        c.store::<S::f32s>(j * lanes, $finished(sum, j));
                    }
                }
            };
        }
        let Some(finish) = finish else {
            store_all!(|sum, _| sum);
            return MR;
        };
        // Each column's scale and shift loaded once for all the rows.
        let per_column = |values: Option<&[f32]>| {
            let mut vectors = [simd.splat_f32s(0.0); NV];
            if let Some(values) = values {
                for (j, vector) in vectors.iter_mut().enumerate() {
                    *vector = load(simd, &values[self.c_first + j * lanes..]);
                }
            }
            vectors
        };
        let (scale, shift) = (per_column(finish.scale), per_column(finish.shift));
        let (scaled, shifted) = (finish.scale.is_some(), finish.shift.is_some());
        let finished = |activation| {
            #[inline(always)]
            move |sum, j: usize| {
                let sum = if scaled { simd.mul_f32s(sum, scale[j]) } else { sum };
                let sum = if shifted { simd.add_f32s(sum, shift[j]) } else { sum };
                activate(simd, activation, sum)
            }
        };
        match finish.activation {
            None => store_all!(finished(None)),
            Some(Activation::Relu) => store_all!(finished(Some(Activation::Relu))),
            Some(Activation::Relu6) => store_all!(finished(Some(Activation::Relu6))),
            Some(Activation::LeakyRelu(alpha)) => store_all!(finished(Some(Activation::LeakyRelu(alpha)))),
            Some(_) => unreachable!("Finish::takes admits the piecewise-linear activations only"),
        }
        MR
    }
}

/// `sums[r] += a[r][i] * b[k]` over the values `i` of `span` (from the
/// start of `a[r]`), `k` counting them, `b[k]` the `NV` vectors at `k *
/// ldb`: for rows of B whole vectors wide. The bounds are checked once,
/// not value by value: the checks of every row cost as much as its
/// multiply-adds on AVX2, and without them in the loop the compiler keeps
/// every sum in a register.
#[inline(always)]
#[allow(unsafe_code)]
fn multiply_add<S: Simd, const MR: usize, const NV: usize>(
    simd: S,
    a: [&[f32]; MR],
    span: Span,
    (b, ldb): (&[f32], usize),
    sums: &mut [[S::f32s; NV]; MR],
) {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    let k = span.runs * span.len;
    assert!(a.iter().all(|a| a.len() >= span.extent()), "gemm: a rows");
    assert!(k == 0 || (k - 1) * ldb + NV * lanes <= b.len(), "gemm: b rows");
    let (a, mut b_row) = (a.map(<[f32]>::as_ptr), b.as_ptr());
    let mut s = *sums;
    // Value `$at` of each row of A (from the run's start) times the next
    // row of B. (A closure is not inlined into the kernel's vector code.)
    macro_rules! multiply_add_at {
        ($a:expr, $at:expr) => {{
            // SAFETY: row `run * len + i < k` of B, `NV * lanes` values from
            // its start, is within `b`, and value `run * step + i * spacing`
            // of each `a[r]` within it (both asserted above).
            let (row, a) =
                unsafe { (std::slice::from_raw_parts(b_row, NV * lanes), $a.map(|a| *a.add($at))) };
            let row: [S::f32s; NV] = std::array::from_fn(
                #[inline(always)]
                |j| load(simd, &row[j * lanes..]),
            );
            for (s, a) in s.iter_mut().zip(a) {
                let a = simd.splat_f32s(a);
                for (sum, b) in s.iter_mut().zip(row) {
                    *sum = simd.mul_add_f32s(a, b, *sum);
                }
            }
            b_row = b_row.wrapping_add(ldb);
        }};
    }
    // Values next to each other (all but a weight gradient's) stepped by
    // one, which the compiler then knows: W1's conv ran 2-3% slower with
    // the spacing multiplied in, W6's 3% with this test made run by run.
    if span.spacing == 1 {
        for run in 0..span.runs {
            let a = a.map(|a| a.wrapping_add(run * span.step));
            for i in 0..span.len {
                multiply_add_at!(a, i);
            }
        }
    } else {
        for run in 0..span.runs {
            let a = a.map(|a| a.wrapping_add(run * span.step));
            for i in 0..span.len {
                multiply_add_at!(a, i * span.spacing);
            }
        }
    }
    *sums = s;
}

/// A vector from the start of `values`, zeros past their end.
#[inline(always)]
pub(crate) fn load<S: Simd>(simd: S, values: &[f32]) -> S::f32s {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    match values.get(..lanes) {
        Some(whole) => bytemuck::pod_read_unaligned(bytemuck::cast_slice(whole)),
        None => simd.partial_load_f32s(values),
    }
}

/// Lanes `0..len` of a vector set, the rest clear: to keep the first
/// `len` lanes of a vector loaded whole.
#[inline(always)]
pub(crate) fn first_lanes<S: Simd>(simd: S, len: usize) -> S::m32s {
    const IOTA: [u32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    let iota: S::u32s = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&IOTA[..lanes]));
    simd.less_than_u32s(iota, simd.splat_u32s(len as u32))
}

/// A vector into the start of `values`, as much of it as fits.
#[inline(always)]
pub(crate) fn store<S: Simd>(simd: S, values: &mut [f32], vector: S::f32s) {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    match values.get_mut(..lanes) {
        Some(whole) => whole.copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&vector))),
        None => simd.partial_store_f32s(values, vector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by nested loops, in f64.
    fn reference(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|l| a.data[i * a.row_stride + l] as f64 * b.data[l * b.row_stride + j] as f64)
                    .sum();
            }
        }
        c
    }

    /// `act(v * scale + shift)` for column `j`, in f64.
    fn finished(finish: &Finish<'_>, j: usize, v: f64) -> f64 {
        let v = v * finish.scale.map_or(1.0, |s| s[j] as f64) + finish.shift.map_or(0.0, |t| t[j] as f64);
        match finish.activation {
            None => v,
            Some(Activation::Relu) => v.max(0.0),
            Some(Activation::Relu6) => v.clamp(0.0, 6.0),
            Some(Activation::LeakyRelu(alpha)) => {
                if v < 0.0 {
                    alpha as f64 * v
                } else {
                    v
                }
            }
            Some(other) => unreachable!("{other:?} is not finished in the kernel"),
        }
    }

    #[test]
    fn matches_nested_loops_on_every_block_and_tail() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
        };
        // Rows around every MR and the tails 4 and 1; columns around every
        // number of vectors at 8 and 16 lanes; strides wider than the matrix.
        for (kernels, (m, k, n)) in Kernels::ALL.into_iter().flat_map(|kernels| {
            [
                (1, 1, 1),
                (3, 0, 5),
                (30, 400, 64),
                (12, 1000, 20),
                (29, 27, 32),
                (53, 5, 64),
                (7, 300, 16),
                (13, 9, 70),
                (50, 3, 8),
            ]
            .map(|size| (kernels, size))
        }) {
            for n in [n, n + 3] {
                let (lda, ldb, ldc) = (k + 2, n + 5, n + 1);
                let (a, b) = (values(m * lda, 1), values(k * ldb, 2));
                let mut c = vec![f32::NAN; m * ldc];
                let (a, b) = (MatRef::block(&a, m, k, lda), MatRef::block(&b, k, n, ldb));
                // Each finish in turn: none, scale and shift, each activation.
                let (scale, shift): (Vec<f32>, Vec<f32>) =
                    (0..n).map(|j| (0.5 + j as f32 / 64.0, j as f32 / 32.0 - 0.7)).unzip();
                let activations =
                    [None, Some(Activation::Relu), Some(Activation::Relu6), Some(Activation::LeakyRelu(0.1))];
                let finish = Finish {
                    scale: (m % 2 == 0).then_some(&scale[..]),
                    shift: (m % 3 != 0).then_some(&shift[..]),
                    activation: activations[(m + k) % 4],
                    accumulate: n % 2 == 1,
                };
                // Accumulating onto C's values: start from known ones.
                let start = |i: usize, j: usize| (i * ldc + j) as f32 / 100.0;
                if finish.accumulate {
                    (0..m).for_each(|i| (0..n).for_each(|j| c[i * ldc + j] = start(i, j)));
                }
                multiply(a, b, MatMut::block(&mut c, m, n, ldc), finish, kernels);
                let from = |i: usize, j: usize| if finish.accumulate { start(i, j) as f64 } else { 0.0 };
                let expected: Vec<f64> = reference(a, b)
                    .chunks(n)
                    .enumerate()
                    .flat_map(|(i, row)| {
                        let row = row.iter().enumerate();
                        row.map(|(j, &v)| finished(&finish, j, from(i, j) + v)).collect::<Vec<_>>()
                    })
                    .collect();
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert!(got.is_nan(), "{kernels:?} {m}x{k}x{n}: wrote past column {n}");
                            continue;
                        }
                        let want = expected[i * n + j];
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{kernels:?} {m}x{k}x{n} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The transposed im2col matrix read in place, against the taps
        /// summed by nested loops: strides, a dilated height, tap rows that
        /// cross kernel rows, output channels around each vector count.
        #[test]
        fn taps_match_nested_loops(
            (kh, kw, sh, sw, dh) in (1usize..4, 1usize..5, 1usize..4, 1usize..4, 1usize..3),
            (extra_h, extra_w, cin, cout) in (0usize..6, 0usize..9, 1usize..10, 1usize..71),
        ) {
            use cnn_shape::{Axis, Rounding, Window};
            let axis = |kernel, stride, dilation, extra| {
                let window = Window { input: (kernel - 1) * dilation + 1 + extra, kernel, stride, pad_before: 0, pad_after: 0, dilation };
                Axis::new(window, Rounding::Floor).expect("the kernel fits")
            };
            let (h, w) = (axis(kh, sh, dh, extra_h), axis(kw, sw, 1, extra_w));
            let g = ConvGeometry { height: h, width: w, in_channels: cin, out_channels: cout, groups: 1 };
            let pixels = h.output * w.output;
            let values = |len: usize, seed: usize| -> Vec<f32> {
                (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
            };
            let (x, dy) = (values(g.input_len(), 1), values(pixels * cout, 2));
            let (taps, ldc) = (g.patch_len(), cout + 2);
            for kernels in Kernels::ALL.into_iter().filter(|&k| reads_patches(&g, k)) {
                let start = |t: usize, o: usize| (t * ldc + o) as f32 / 100.0;
                let mut c: Vec<f32> = (0..taps * ldc).map(|i| if i % ldc < cout { start(i / ldc, i % ldc) } else { f32::NAN }).collect();
                let b = MatRef::row_major(&dy, pixels, cout);
                multiply_taps(&x, &g, b, MatMut::block(&mut c, taps, cout, ldc), Finish::ACCUMULATE, kernels);
                for t in 0..taps {
                    let (ky, kx, ci) = (t / (kw * cin), t / cin % kw, t % cin);
                    for o in 0..ldc {
                        let got = c[t * ldc + o];
                        if o >= cout {
                            proptest::prop_assert!(got.is_nan(), "{kernels:?}: wrote past column {cout}");
                            continue;
                        }
                        let want: f64 = start(t, o) as f64 + (0..pixels)
                            .map(|p| {
                                let (iy, ix) = (p / w.output * sh + ky * dh, p % w.output * sw + kx);
                                x[(iy * w.input + ix) * cin + ci] as f64 * dy[p * cout + o] as f64
                            })
                            .sum::<f64>();
                        proptest::prop_assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{kernels:?} {g:?} tap {t} column {o}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
