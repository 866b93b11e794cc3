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
    /// Input rows in the ring: the kernel's reach, `(KH - 1) * d + 1`.
    rows: usize,
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
        Panel { used, plane: used.next_multiple_of(LANES), rows: (h.kernel - 1) * h.dilation + 1 }
    }

    /// Values of a panel: `rows * CIN * stride` planes.
    pub fn len(&self, g: &ConvGeometry) -> usize {
        self.rows * g.in_channels * g.width.stride * self.plane
    }

    /// Makes `panel` hold the input rows of output row `oy` of image `b`,
    /// copying in only those that `held` says it does not hold yet. Returns
    /// the ring slot of kernel row 0, for [`for_each_tap`](Self::for_each_tap).
    pub fn load(
        &self,
        x: &[f32],
        g: &ConvGeometry,
        b: usize,
        oy: usize,
        panel: &mut [f32],
        held: &mut Option<Held>,
    ) -> usize {
        let start = oy * g.height.stride;
        let keys = start..start + self.rows;
        let missing = match held {
            Some(h) if h.image == b && h.keys.start <= start => h.keys.end.max(start)..keys.end,
            _ => keys.clone(),
        };
        for key in missing {
            self.fill_row(x, g, b, key, panel);
        }
        *held = Some(Held { image: b, keys });
        start % self.rows
    }

    /// Calls `f(t, at)` for each tap `t` of group `group`, in the weights'
    /// `(ky, kx, ci)` order, `at` being where output column 0 reads it.
    /// `first` is the ring slot of kernel row 0, from [`load`](Self::load).
    #[inline(always)]
    pub fn for_each_tap(
        &self,
        g: &ConvGeometry,
        group: usize,
        first: usize,
        mut f: impl FnMut(usize, usize),
    ) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let cin_g = cin / g.groups;
        let mut t = 0;
        for ky in 0..h.kernel {
            // first < rows and ky * d < rows: one subtraction wraps the ring.
            let slot = first + ky * h.dilation;
            let slot = if slot >= self.rows { slot - self.rows } else { slot };
            let row = (slot * cin + group * cin_g) * w.stride * self.plane;
            if w.stride == 1 {
                // One plane per channel, tap kx shifted by kx * d: a loop
                // the compiler keeps in registers.
                for kx in 0..w.kernel {
                    for ci in 0..cin_g {
                        f(t, row + ci * self.plane + kx * w.dilation);
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
                    f(t, row + (ci * w.stride + phase) * self.plane + shift);
                    t += 1;
                }
                phase += w.dilation;
                while phase >= w.stride {
                    (phase, shift) = (phase - w.stride, shift + 1);
                }
            }
        }
    }

    /// Copies padded input row `key` of image `b` into its ring slot.
    ///
    /// Not inlined into the vectorised tile: built for AVX2 or AVX-512 its
    /// strided reads become gathers, which are slow, and slower still under
    /// the microcode mitigation of Gather Data Sampling.
    #[inline(never)]
    fn fill_row(&self, x: &[f32], g: &ConvGeometry, b: usize, key: usize, panel: &mut [f32]) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let image = &x[b * g.input_len()..][..g.input_len()];
        let input_row = key
            .checked_sub(h.pad_before)
            .filter(|&iy| iy < h.input)
            .map(|iy| &image[iy * w.input * cin..][..w.input * cin]);
        let planes =
            &mut panel[key % self.rows * cin * w.stride * self.plane..][..cin * w.stride * self.plane];
        let Some(input_row) = input_row else {
            planes.fill(0.0);
            return;
        };
        for phase in 0..w.stride {
            // Plane values lo..hi fall inside the input, from input column `first`.
            let lo = w.pad_before.saturating_sub(phase).div_ceil(w.stride).min(self.used);
            let hi = (w.pad_before + w.input).saturating_sub(phase).div_ceil(w.stride).clamp(lo, self.used);
            let first = (lo * w.stride + phase).saturating_sub(w.pad_before);
            for ci in 0..cin {
                let plane = &mut planes[(ci * w.stride + phase) * self.plane..][..self.used];
                plane[..lo].fill(0.0);
                let (inside, values) =
                    (&input_row[(first * cin + ci).min(input_row.len())..], &mut plane[lo..hi]);
                if w.stride * cin == 1 {
                    values.copy_from_slice(&inside[..values.len()]);
                } else {
                    values.iter_mut().zip(inside.iter().step_by(w.stride * cin)).for_each(|(v, x)| *v = *x);
                }
                plane[hi..].fill(0.0);
            }
        }
    }
}
