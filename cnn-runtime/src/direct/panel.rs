//! The panel of one output row: its kernel rows, padded, one plane per input
//! channel and stride phase.
//!
//! Value `i` of plane `(ky, ci, phase)` is input channel `ci` at padded
//! column `i * stride + phase` of input row `oy * stride - pad + ky * dilation`,
//! zero where that is padding. Tap `(ky, kx, ci)` of output column `ox` is
//! then value `ox + kx * d / s` of plane `(ky, ci, kx * d % s)`: the taps of
//! consecutive output pixels are consecutive values, read as vectors.

use super::LANES;
use crate::layers::ConvGeometry;

/// The sizes of a panel.
#[derive(Clone, Copy, Debug)]
pub struct Panel {
    /// Values of one plane that are read: the row's output columns in whole
    /// vectors, and the reach of the kernel past them.
    used: usize,
    /// Values from one plane to the next: `used`, rounded up so that planes
    /// start on 64-byte lines and tap kx = 0 reads aligned vectors.
    plane: usize,
}

impl Panel {
    pub fn new(g: &ConvGeometry) -> Panel {
        let w = g.width;
        let used = w.output.div_ceil(LANES) * LANES + (w.kernel - 1) * w.dilation / w.stride;
        Panel { used, plane: used.next_multiple_of(LANES) }
    }

    /// Values of a panel: `KH * CIN * stride` planes.
    pub fn len(&self, g: &ConvGeometry) -> usize {
        g.height.kernel * g.in_channels * g.width.stride * self.plane
    }

    /// Calls `f(t, at)` for each tap `t` of group `group`, in the weights'
    /// `(ky, kx, ci)` order, `at` being where output column 0 reads it.
    #[inline(always)]
    pub fn for_each_tap(&self, g: &ConvGeometry, group: usize, mut f: impl FnMut(usize, usize)) {
        let (w, cin) = (g.width, g.in_channels);
        let cin_g = cin / g.groups;
        let mut t = 0;
        for ky in 0..g.height.kernel {
            // Phase `kx * d % s` and shift `kx * d / s`, kept as kx goes
            // rather than divided.
            let (mut phase, mut shift) = (0, 0);
            for _kx in 0..w.kernel {
                let plane = (ky * cin + group * cin_g) * w.stride + phase;
                for ci in 0..cin_g {
                    f(t, (plane + ci * w.stride) * self.plane + shift);
                    t += 1;
                }
                phase += w.dilation;
                while phase >= w.stride {
                    (phase, shift) = (phase - w.stride, shift + 1);
                }
            }
        }
    }

    /// Fills `panel` with output row `oy` of image `b`.
    ///
    /// Not inlined into the vectorised tile: built for AVX2 or AVX-512 its
    /// strided reads become gathers, which are slow, and slower still under the
    /// microcode mitigation of Gather Data Sampling.
    #[inline(never)]
    pub fn fill(&self, x: &[f32], g: &ConvGeometry, b: usize, oy: usize, panel: &mut [f32]) {
        let (h, w, cin) = (g.height, g.width, g.in_channels);
        let image = &x[b * g.input_len()..][..g.input_len()];
        for phase in 0..w.stride {
            // Plane values lo..hi fall inside the input, from input column `first`.
            let lo = w.pad_before.saturating_sub(phase).div_ceil(w.stride).min(self.used);
            let hi = (w.pad_before + w.input).saturating_sub(phase).div_ceil(w.stride).clamp(lo, self.used);
            let first = (lo * w.stride + phase).saturating_sub(w.pad_before);
            for ky in 0..h.kernel {
                let input_row = h.tap(oy, ky).map(|iy| &image[iy * w.input * cin..][..w.input * cin]);
                for ci in 0..cin {
                    let at = ((ky * cin + ci) * w.stride + phase) * self.plane;
                    let plane = &mut panel[at..at + self.used];
                    let Some(input_row) = input_row else {
                        plane.fill(0.0);
                        continue;
                    };
                    plane[..lo].fill(0.0);
                    let (inside, values) =
                        (&input_row[(first * cin + ci).min(input_row.len())..], &mut plane[lo..hi]);
                    if w.stride * cin == 1 {
                        values.copy_from_slice(&inside[..values.len()]);
                    } else {
                        let step = w.stride * cin;
                        for (i, value) in values.iter_mut().enumerate() {
                            *value = inside[i * step];
                        }
                    }
                    plane[hi..].fill(0.0);
                }
            }
        }
    }
}
