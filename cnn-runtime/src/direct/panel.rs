//! The kernel rows of an output row, padded, one plane per input row,
//! input channel and stride phase.
//!
//! Value `i` of plane `(row, ci, phase)` is input channel `ci` at padded
//! column `i * stride + phase` of that input row, zero where that is
//! padding. Tap `(ky, kx, ci)` of output column `ox` is then value
//! `ox + kx * d / s` of plane `(ky's row, ci, kx * d % s)`: the taps of
//! consecutive output pixels are consecutive values, read as vectors.
//!
//! The rows are a ring: the next output row of the same image shares all but
//! `stride` of its input rows with this one, and only those are copied in.
//! The ring holds the input rows of two consecutive output rows, so that a
//! narrow image's rows are convolved two at a time.

use std::ops::Range;

use super::LANES;
use cnn_shape::ConvGeometry;

/// The sizes of a panel.
#[derive(Clone, Copy, Debug)]
pub struct Panel {
    /// Values of one plane that are read: the row's output columns in whole
    /// vectors, and the reach of the kernel past them.
    used: usize,
    /// Values from one plane to the next: `used`, rounded up so that planes
    /// start on 64-byte lines and tap kx = 0 reads aligned vectors.
    plane: usize,
    /// Input rows in the ring: the kernel's reach, `(KH - 1) * d + 1`,
    /// and the stride's rows more, which the next output row reaches.
    rows: usize,
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
        Panel {
            used,
            plane: used.next_multiple_of(LANES),
            rows: reach + h.stride,
            reach,
            inside_from: by_stride(w.pad_before),
            inside_to: by_stride(w.pad_before + w.input),
        }
    }

    /// Values of a panel: `rows * CIN * stride` planes.
    pub fn len(&self, g: &ConvGeometry) -> usize {
        self.rows * g.in_channels * g.width.stride * self.plane
    }

    /// Makes `panel` hold the input rows of output rows `oy..oy + count`
    /// (1 or 2) of image `b`, copying in only those that `held` says it does
    /// not hold yet. Returns the ring slot of kernel row 0 of each, for
    /// [`for_each_tap`](Self::for_each_tap).
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
        let missing = match held {
            Some(h) if h.image == b && h.keys.start <= start => h.keys.end.max(start)..keys.end,
            _ => keys.clone(),
        };
        // Each key's ring slot, stepped rather than divided out.
        let mut slot = missing.start % self.rows;
        for key in missing {
            self.fill_row(x, g, (b, key), slot, panel);
            slot = if slot + 1 == self.rows { 0 } else { slot + 1 };
        }
        *held = Some(Held { image: b, keys });
        [start % self.rows, (start + stride) % self.rows]
    }

    /// Calls `f(t, at)` for each tap `t` of group `group`, in the weights'
    /// `(ky, kx, ci)` order, `at[u]` being where output column 0 of the
    /// output row whose kernel row 0 is in ring slot `firsts[u]` (from
    /// [`load`](Self::load)) reads it.
    #[inline(always)]
    pub fn for_each_tap<const V: usize>(
        &self,
        g: &ConvGeometry,
        group: usize,
        firsts: [usize; V],
        mut f: impl FnMut(usize, [usize; V]),
    ) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let cin_g = cin / g.groups;
        let mut t = 0;
        for ky in 0..h.kernel {
            // first < rows and ky * d < rows: one subtraction wraps the ring.
            // Loops rather than `map`, which may not be inlined into the
            // vectorised tile.
            let mut row = [0; V];
            for (row, first) in row.iter_mut().zip(firsts) {
                let slot = first + ky * h.dilation;
                let slot = if slot >= self.rows { slot - self.rows } else { slot };
                *row = (slot * cin + group * cin_g) * w.stride * self.plane;
            }
            let shifted = |by: usize| {
                let mut at = row;
                at.iter_mut().for_each(|at| *at += by);
                at
            };
            if w.stride == 1 {
                // One plane per channel, tap kx shifted by kx * d: a loop
                // the compiler keeps in registers.
                for kx in 0..w.kernel {
                    for ci in 0..cin_g {
                        f(t, shifted(ci * self.plane + kx * w.dilation));
                        t += 1;
                    }
                }
                continue;
            }
            // Phase `kx * d % s` and shift `kx * d / s`, kept as kx goes
            // rather than divided.
            let (mut phase, mut shift) = (0, 0);
            for _kx in 0..w.kernel {
                for ci in 0..cin_g {
                    f(t, shifted((ci * w.stride + phase) * self.plane + shift));
                    t += 1;
                }
                phase += w.dilation;
                while phase >= w.stride {
                    (phase, shift) = (phase - w.stride, shift + 1);
                }
            }
        }
    }

    /// Copies padded input row `key` of image `b` into ring slot `slot`:
    /// the values of each plane that fall inside the input (zeros in a row
    /// of padding); those outside are padding in every row, zeroed once
    /// with the panel.
    ///
    /// Not inlined into the vectorised tile: built for AVX2 or AVX-512 its
    /// strided reads become gathers, which are slow, and slower still under
    /// the microcode mitigation of Gather Data Sampling.
    #[inline(never)]
    fn fill_row(
        &self,
        x: &[f32],
        g: &ConvGeometry,
        (b, key): (usize, usize),
        slot: usize,
        panel: &mut [f32],
    ) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let image = &x[b * g.input_len()..][..g.input_len()];
        let input_row = key
            .checked_sub(h.pad_before)
            .filter(|&iy| iy < h.input)
            .map(|iy| &image[iy * w.input * cin..][..w.input * cin]);
        let planes = &mut panel[slot * cin * w.stride * self.plane..][..cin * w.stride * self.plane];
        // Plane values lo..hi of phase p fall inside the input: the first
        // i with i * stride + p >= pad, the first with i * stride + p >=
        // pad + input, each a quotient of the stride and one more below
        // the remainder.
        let first_at =
            |(quotient, remainder): (usize, usize), phase: usize| quotient + usize::from(phase < remainder);
        let step = w.stride * cin;
        // One channel and stride 2 (a grayscale image's first conv), with
        // both phases taking the same plane values: the row's pairs split
        // in one pass, rather than two strided passes of a bounds check
        // each.
        if let (Some(input_row), 1, 2) = (input_row, cin, w.stride) {
            let lo = first_at(self.inside_from, 0).min(self.used);
            let hi = first_at(self.inside_to, 0).clamp(lo, self.used);
            let first = (lo * 2).saturating_sub(w.pad_before);
            let same = (
                first_at(self.inside_from, 1).min(self.used),
                first_at(self.inside_to, 1).clamp(lo, self.used),
            );
            let pairs = input_row.get(first..).unwrap_or_default();
            if same == (lo, hi) && lo * 2 >= w.pad_before && pairs.len() >= 2 * (hi - lo) {
                let (even, odd) = planes.split_at_mut(self.plane);
                let (even, odd) = (&mut even[lo..hi], &mut odd[lo..hi]);
                for ((e, o), pair) in even.iter_mut().zip(odd).zip(pairs.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                return;
            }
        }
        for phase in 0..w.stride {
            let lo = first_at(self.inside_from, phase).min(self.used);
            let hi = first_at(self.inside_to, phase).clamp(lo, self.used);
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
    }
}
