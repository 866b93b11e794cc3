//! The kernel rows of an output row, padded, one plane per input row,
//! input channel and stride phase.
//!
//! Value `i` of plane `(row, ci, phase)` is input channel `ci` at padded
//! column `i * stride + phase` of that input row, zero where that is
//! padding. Tap `(ky, kx, ci)` of output column `ox` is then value
//! `ox + kx * d / s` of plane `(ky's row, ci, kx * d % s)`: the taps of
//! consecutive output pixels are consecutive values, read as vectors, each
//! tap a fixed offset ([`Panel::taps`]) from where its output row starts.
//!
//! A small image is held whole, each row in its own slot, copied in once.
//! A larger one's rows are a ring: the next output row of the same image
//! shares all but `stride` of its input rows with this one, and only those
//! are copied in. The ring holds the input rows of two consecutive output
//! rows, so that a narrow image's rows are convolved two at a time, and
//! each of its rows twice, in slots `rows` apart: the rows of an output
//! row are then consecutive slots wherever in the ring it starts.

use std::ops::Range;

use super::LANES;
use cnn_shape::ConvGeometry;

/// The most bytes of an image's planes that a panel holds whole rather
/// than as a ring: a small image, whose rows' copies cost more in calls
/// than in values.
const WHOLE_IMAGE_BYTES: usize = 16 * 1024;

/// The sizes of a panel.
#[derive(Clone, Copy, Debug)]
pub struct Panel {
    /// Values of one plane that are read: the row's output columns in whole
    /// vectors, and the reach of the kernel past them.
    used: usize,
    /// Values from one plane to the next: `used`, rounded up so that planes
    /// start on 64-byte lines and tap kx = 0 reads aligned vectors.
    plane: usize,
    /// Values from one slot (an input row's planes) to the next.
    slot: usize,
    /// Input rows held: the padded image's, or the ring's: the kernel's
    /// reach, `(KH - 1) * d + 1`, and the stride's rows more, which the
    /// next output row reaches.
    rows: usize,
    /// Whether a whole image is held, rather than a ring of its rows.
    whole: bool,
    /// Input rows one output row reads: the kernel's reach.
    reach: usize,
    /// The left padding and the padding plus the input, each as a quotient
    /// and remainder of the stride: where each phase's plane starts and
    /// stops taking input, without a division for every row.
    inside_from: (usize, usize),
    inside_to: (usize, usize),
}

/// The input rows a panel holds: padded rows `keys` (input row + top
/// padding) of image `image`.
#[derive(Clone, Debug)]
pub struct Held {
    image: usize,
    keys: Range<usize>,
}

impl Panel {
    pub fn new(g: &ConvGeometry) -> Panel {
        let (h, w) = (g.height, g.width);
        let used = w.output.div_ceil(LANES) * LANES + (w.kernel - 1) * w.dilation / w.stride;
        let reach = (h.kernel - 1) * h.dilation + 1;
        let by_stride = |n: usize| (n / w.stride, n % w.stride);
        let plane = used.next_multiple_of(LANES);
        let slot = g.in_channels * w.stride * plane;
        // The padded rows that the output rows read, and those the ring
        // holds for two of them.
        let (read, ring) = ((h.output.max(1) - 1) * h.stride + reach, reach + h.stride);
        let whole = read.max(ring) * slot * size_of::<f32>() <= WHOLE_IMAGE_BYTES;
        Panel {
            used,
            plane,
            slot,
            rows: if whole { read.max(ring) } else { ring },
            whole,
            reach,
            inside_from: by_stride(w.pad_before),
            inside_to: by_stride(w.pad_before + w.input),
        }
    }

    /// Values of a panel: a slot for each row held, two for each of a ring's.
    pub fn len(&self) -> usize {
        if self.whole { self.rows * self.slot } else { 2 * self.rows * self.slot }
    }

    /// Into `taps`, where tap `t` of an output row's column 0 is, from
    /// where its rows and group start ([`load`](Self::load),
    /// [`group`](Self::group)), for each tap of a group in the weights'
    /// `(ky, kx, ci)` order.
    pub fn taps(&self, g: &ConvGeometry, taps: &mut Vec<usize>) {
        let (h, w) = (g.height, g.width);
        taps.clear();
        for ky in 0..h.kernel {
            for kx in 0..w.kernel {
                let (shift, phase) = (kx * w.dilation / w.stride, kx * w.dilation % w.stride);
                for ci in 0..g.in_channels / g.groups {
                    taps.push(ky * h.dilation * self.slot + (ci * w.stride + phase) * self.plane + shift);
                }
            }
        }
    }

    /// Where group `group`'s planes start within a slot.
    pub fn group(&self, g: &ConvGeometry, group: usize) -> usize {
        group * (g.in_channels / g.groups) * g.width.stride * self.plane
    }

    /// Makes `panel` hold the input rows of output rows `oy..oy + count`
    /// (1 or 2) of image `b`, copying in only those that `held` says it does
    /// not hold yet. Returns where the rows of each start, for
    /// [`taps`](Self::taps).
    pub fn load(
        &self,
        x: &[f32],
        g: &ConvGeometry,
        b: usize,
        (oy, count): (usize, usize),
        panel: &mut [f32],
        held: &mut Option<Held>,
    ) -> [usize; 2] {
        debug_assert!((1..=2).contains(&count), "the ring holds two output rows");
        let stride = g.height.stride;
        let start = oy * stride;
        let keys = start..start + self.reach + (count - 1) * stride;
        let same_image = held.as_ref().is_some_and(|h| h.image == b);
        let missing = match held {
            // The image's padding rows are zero from the start.
            _ if self.whole && same_image => 0..0,
            _ if self.whole => g.height.pad_before..(g.height.pad_before + g.height.input).min(self.rows),
            Some(h) if same_image && h.keys.start <= start => h.keys.end.max(start)..keys.end,
            _ => keys.clone(),
        };
        if !missing.is_empty() {
            self.fill_rows(x, g, (b, missing.clone()), missing.start % self.rows, panel);
        }
        *held = Some(Held { image: b, keys: if self.whole { 0..self.rows } else { keys } });
        [start % self.rows * self.slot, (start + stride) % self.rows * self.slot]
    }

    /// Copies padded input rows `keys` of image `b` into the ring slots
    /// from `slot` on: the values of each plane that fall inside the input
    /// (zeros in a row of padding); those outside are padding in every
    /// row, zeroed once with the panel.
    ///
    /// Not inlined into the vectorised tile: built for AVX2 or AVX-512 its
    /// strided reads become gathers, which are slow, and slower still under
    /// the microcode mitigation of Gather Data Sampling.
    #[inline(never)]
    fn fill_rows(
        &self,
        x: &[f32],
        g: &ConvGeometry,
        (b, keys): (usize, Range<usize>),
        mut slot: usize,
        panel: &mut [f32],
    ) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let image = &x[b * g.input_len()..][..g.input_len()];
        // Plane values lo..hi of phase p fall inside the input: the first
        // i with i * stride + p >= pad, the first with i * stride + p >=
        // pad + input, each a quotient of the stride and one more below
        // the remainder.
        let first_at =
            |(quotient, remainder): (usize, usize), phase: usize| quotient + usize::from(phase < remainder);
        let inside = |phase: usize| {
            let lo = first_at(self.inside_from, phase).min(self.used);
            (lo, first_at(self.inside_to, phase).clamp(lo, self.used))
        };
        let step = w.stride * cin;
        // One channel and stride 2 (a grayscale image's first conv), with
        // both phases taking the same plane values: the row's pairs split
        // in one pass, rather than two strided passes of a bounds check
        // each.
        let (lo, hi) = inside(0);
        let pairs_from = (cin, w.stride) == (1, 2) && inside(1) == (lo, hi) && lo * 2 >= w.pad_before;
        let pairs_from =
            pairs_from.then(|| lo * 2 - w.pad_before).filter(|&first| first + 2 * (hi - lo) <= w.input);
        let fill = |planes: &mut [f32], input_row: Option<&[f32]>| {
            if let (Some(input_row), Some(first)) = (input_row, pairs_from) {
                let (even, odd) = planes.split_at_mut(self.plane);
                let (even, odd) = (&mut even[lo..hi], &mut odd[lo..hi]);
                let pairs = input_row[first..][..2 * (hi - lo)].as_chunks::<2>().0;
                for ((e, o), &[a, b]) in even.iter_mut().zip(odd).zip(pairs) {
                    (*e, *o) = (a, b);
                }
                return;
            }
            for phase in 0..w.stride {
                let (lo, hi) = inside(phase);
                let first = (lo * w.stride + phase).saturating_sub(w.pad_before);
                for ci in 0..cin {
                    let values = &mut planes[(ci * w.stride + phase) * self.plane..][lo..hi];
                    let Some(input_row) = input_row else {
                        values.fill(0.0);
                        continue;
                    };
                    let inside = &input_row[(first * cin + ci).min(input_row.len())..];
                    if step == 1 {
                        values.copy_from_slice(&inside[..values.len()]);
                    } else if let Some(last) = values.len().checked_sub(1) {
                        // By index, one bounds check: `step_by` divides to
                        // find its length, which costs as much as the copy.
                        let inside = &inside[..last * step + 1];
                        values.iter_mut().enumerate().for_each(|(i, v)| *v = inside[i * step]);
                    }
                }
            }
        };
        for key in keys {
            let input_row = key
                .checked_sub(h.pad_before)
                .filter(|&iy| iy < h.input)
                .map(|iy| &image[iy * w.input * cin..][..w.input * cin]);
            let at = slot * self.slot;
            fill(&mut panel[at..][..self.slot], input_row);
            if !self.whole {
                panel.copy_within(at..at + self.slot, at + self.rows * self.slot);
            }
            slot = if slot + 1 == self.rows { 0 } else { slot + 1 };
        }
    }
}
