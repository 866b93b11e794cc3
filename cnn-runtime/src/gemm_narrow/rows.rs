//! Where the rows of A are, for the kernel of [`super`]: a matrix's rows,
//! a conv's patches read from its input, or the transpose of the patches
//! (a weight gradient's taps); and how a pass over `k` walks them.

use cnn_shape::ConvGeometry;

use crate::gemm::MatRef;

use super::b_part_bytes;

/// The rows of A, read where they are.
#[derive(Clone, Copy)]
pub(super) enum Rows<'a> {
    /// A row-major matrix.
    Matrix(MatRef<'a>),
    /// Row `i` the patch of output pixel `first_pixel + i` of images `x`,
    /// in `(ky, kx, ci)` order: per kernel row, a run of `KW * CIN` values.
    Patches { x: &'a [f32], g: &'a ConvGeometry, first_pixel: usize, pixels: usize },
    /// Row `t` tap `t` of the kernel, its value `k` the input that tap
    /// reads for output pixel `k` of the image `x`: per output row, `OW`
    /// values a stride of the input apart.
    Taps { x: &'a [f32], g: &'a ConvGeometry },
}

/// How the `k` values of a row of A lie: `rows` runs of `row_len` values
/// `spacing` apart, run `r` at `r * step` from the row's first value (a
/// patch's kernel rows, a tap's output rows; a matrix row is one run),
/// read in pieces of at most `piece` values; a pass over the rows of A
/// takes `per_pass` pieces, so that the rows of B it reads stay in L1.
#[derive(Clone, Copy)]
pub(super) struct Runs {
    pub(super) rows: usize,
    pub(super) row_len: usize,
    pub(super) step: usize,
    pub(super) spacing: usize,
    pub(super) piece: usize,
    pub(super) per_pass: usize,
}

/// The values of a row of A that one pass reads: `runs` runs of `len`
/// values `spacing` apart, `step` apart from `a_start`, their `k` one after
/// another from `k_start`.
#[derive(Clone, Copy)]
pub(super) struct Span {
    pub(super) a_start: usize,
    pub(super) step: usize,
    pub(super) spacing: usize,
    pub(super) runs: usize,
    pub(super) len: usize,
    pub(super) k_start: usize,
}

impl Span {
    /// From the first value of the span to just past its last (a pass
    /// takes at least one value of one run).
    pub(super) fn extent(&self) -> usize {
        (self.runs - 1) * self.step + (self.len - 1) * self.spacing + 1
    }

    /// Where each value lies from the span's first, in the order of `k`.
    pub(super) fn offsets(&self) -> impl Iterator<Item = usize> {
        let (step, len, spacing) = (self.step, self.len, self.spacing);
        (0..self.runs).flat_map(move |run| (0..len).map(move |i| run * step + i * spacing))
    }
}

impl Runs {
    /// The passes over a row of A, in the order of `k`. A pass of several
    /// pieces takes whole runs, so its `k` are consecutive.
    pub(super) fn passes(self) -> impl Iterator<Item = (Span, bool)> {
        let per_run = self.row_len.div_ceil(self.piece);
        let count = self.rows * per_run;
        (0..count).step_by(self.per_pass).map(move |first| {
            let (run, skip) = (first / per_run, first % per_run * self.piece);
            let span = Span {
                a_start: run * self.step + skip * self.spacing,
                step: self.step,
                spacing: self.spacing,
                runs: self.per_pass.min(count - first),
                len: self.piece.min(self.row_len - skip),
                k_start: run * self.row_len + skip,
            };
            (span, first + self.per_pass >= count)
        })
    }
}

impl Rows<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Rows::Matrix(a) => a.rows,
            Rows::Patches { pixels, .. } => *pixels,
            Rows::Taps { g, .. } => g.patch_len(),
        }
    }

    pub(super) fn k(&self) -> usize {
        match self {
            Rows::Matrix(a) => a.cols,
            Rows::Patches { g, .. } => g.patch_len(),
            Rows::Taps { g, .. } => g.height.output * g.width.output,
        }
    }

    pub(super) fn data(&self) -> &[f32] {
        match self {
            Rows::Matrix(a) => a.data,
            Rows::Patches { x, .. } | Rows::Taps { x, .. } => x,
        }
    }

    /// The runs of a row, cut into pieces that keep the rows of B they read
    /// (`width` wide) within [`b_part_bytes`] at `lanes` floats a vector.
    pub(super) fn runs(&self, width: usize, lanes: usize) -> Runs {
        let (rows, row_len, step, spacing) = match self {
            Rows::Matrix(a) => (1, a.cols, 0, 1),
            Rows::Patches { g, .. } => {
                let (h, w) = (g.height, g.width);
                (h.kernel, w.kernel * g.in_channels, h.dilation * w.input * g.in_channels, 1)
            }
            Rows::Taps { g, .. } => {
                let (h, w, cin) = (g.height, g.width, g.in_channels);
                (h.output, w.output, h.stride * w.input * cin, w.stride * cin)
            }
        };
        let fit = (b_part_bytes(lanes) / (width * size_of::<f32>())).max(1);
        // Pieces of even length, so that none is a short tail; short runs
        // whole, as many a pass as fit.
        let piece = row_len.div_ceil(row_len.div_ceil(fit).max(1)).max(1);
        let per_pass = if piece == row_len { (fit / row_len.max(1)).max(1) } else { 1 };
        Runs { rows, row_len, step, spacing, piece, per_pass }
    }

    /// Where row `first` is.
    pub(super) fn position(&self, first: usize) -> Position {
        match self {
            Rows::Matrix(_) => Position { image: first, oy: 0, ox: 0 },
            Rows::Patches { g, first_pixel, .. } => {
                let (pixel, (oh, ow)) = (first_pixel + first, (g.height.output, g.width.output));
                Position { image: pixel / (oh * ow), oy: pixel / ow % oh, ox: pixel % ow }
            }
            // A tap's kernel row as `oy`, its place in that row's run as `ox`.
            Rows::Taps { g, .. } => {
                let run = g.width.kernel * g.in_channels;
                Position { image: 0, oy: first / run, ox: first % run }
            }
        }
    }

    /// Where the first values of the `MR` rows from `at` are in
    /// [`data`](Self::data); `at` moves past them.
    #[inline(always)]
    pub(super) fn starts<const MR: usize>(&self, at: &mut Position) -> [usize; MR] {
        match self {
            Rows::Matrix(a) => {
                let first = at.image;
                at.image += MR;
                std::array::from_fn(|r| (first + r) * a.row_stride)
            }
            Rows::Patches { g, .. } => {
                let (h, w, cin) = (g.height, g.width, g.in_channels);
                let start = |at: Position| {
                    at.image * g.input_len() + (at.oy * h.stride * w.input + at.ox * w.stride) * cin
                };
                // Most often all the rows are pixels of one output row.
                if at.ox + MR < w.output {
                    let first = start(*at);
                    at.ox += MR;
                    return std::array::from_fn(|r| first + r * w.stride * cin);
                }
                let mut starts = [0; MR];
                for first in &mut starts {
                    let Position { image, oy, ox } = *at;
                    *first = start(*at);
                    *at = match (ox + 1 == w.output, oy + 1 == h.output) {
                        (false, _) => Position { ox: ox + 1, ..*at },
                        (true, false) => Position { oy: oy + 1, ox: 0, ..*at },
                        (true, true) => Position { image: image + 1, oy: 0, ox: 0 },
                    };
                }
                starts
            }
            Rows::Taps { g, .. } => {
                let (run, row) = (g.width.kernel * g.in_channels, g.width.input * g.in_channels);
                let start = |at: Position| at.oy * g.height.dilation * row + at.ox;
                // Most often all the taps are in one kernel row's run.
                if at.ox + MR < run {
                    let first = start(*at);
                    at.ox += MR;
                    return std::array::from_fn(|r| first + r);
                }
                let mut starts = [0; MR];
                for first in &mut starts {
                    *first = start(*at);
                    *at = if at.ox + 1 == run {
                        Position { oy: at.oy + 1, ox: 0, ..*at }
                    } else {
                        Position { ox: at.ox + 1, ..*at }
                    };
                }
                starts
            }
        }
    }
}

/// Where a row of A is: its output pixel's image, row and column (a
/// matrix's row as `image`, a tap's kernel row and place in that row's
/// run as `oy` and `ox`). Stepped from row to row rather than divided
/// out for each: three divisions cost as much as the multiply-adds of a
/// patch of 27.
#[derive(Clone, Copy)]
pub(super) struct Position {
    pub(super) image: usize,
    pub(super) oy: usize,
    pub(super) ox: usize,
}
