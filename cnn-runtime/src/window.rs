//! The sliding window along one spatial axis, shared by convolution and pooling.
//!
//! With input `n`, kernel `k`, stride `s`, padding `pb` before and `pa` after
//! and dilation `d`:
//!
//! ```text
//! span = n + pb + pa - d(k - 1) - 1
//! out  = span / s + 1                       (rounded down)
//! out  = ceil(span / s) + 1, less one if the last window would start
//!        past the input and its left padding (PyTorch's ceil_mode)
//! ```
//!
//! Window `o` covers input positions `o*s - pb + i*d` for `i < k`; positions
//! outside `0..n` are padding.

/// One axis of a sliding window, its output size worked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_before: usize,
    pub pad_after: usize,
    pub dilation: usize,
    pub output: usize,
}

impl Axis {
    /// The axis with its output size, rounded down, or up when `ceil`.
    ///
    /// The macro has already rejected windows that do not fit; here a window
    /// that does not fit gives an output of 0 rather than a panic.
    pub const fn new(
        input: usize,
        kernel: usize,
        stride: usize,
        pad_before: usize,
        pad_after: usize,
        dilation: usize,
        ceil: bool,
    ) -> Axis {
        let reach = dilation.saturating_mul(kernel.saturating_sub(1)).saturating_add(1);
        let padded = input.saturating_add(pad_before).saturating_add(pad_after);
        let stride = if stride == 0 { 1 } else { stride };
        let output = if padded < reach || kernel == 0 {
            0
        } else {
            let span = padded - reach;
            if ceil {
                let out = span.div_ceil(stride) + 1;
                // The last window must start inside the input or its left padding.
                if (out - 1) * stride >= input + pad_before { out - 1 } else { out }
            } else {
                span / stride + 1
            }
        };
        Axis { input, kernel, stride, pad_before, pad_after, dilation, output }
    }

    /// Where window `o` starts, in input coordinates (negative inside the padding).
    #[inline]
    pub fn start(&self, o: usize) -> isize {
        (o * self.stride) as isize - self.pad_before as isize
    }

    /// The input position of tap `i` of window `o`, if it is not padding.
    #[inline]
    pub fn tap(&self, o: usize, i: usize) -> Option<usize> {
        let pos = self.start(o) + (i * self.dilation) as isize;
        (pos >= 0 && (pos as usize) < self.input).then_some(pos as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::Axis;

    #[test]
    fn follows_pytorch_on_known_cases() {
        // nn.Conv2d(k=7, s=2) on 32: floor((32 - 7) / 2) + 1 = 13
        assert_eq!(Axis::new(32, 7, 2, 0, 0, 1, false).output, 13);
        // nn.MaxPool2d(3, 2, ceil_mode=True) on 6: ceil(3 / 2) + 1 = 3
        assert_eq!(Axis::new(6, 3, 2, 0, 0, 1, true).output, 3);
        // MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5: ceil(5 / 2) + 1 = 4,
        // but window 3 would start at 6 >= 5 + 1, all in the right padding: 3
        assert_eq!(Axis::new(5, 2, 2, 1, 1, 1, true).output, 3);
        // MaxPool2d(2, 2, ceil_mode=True) on 5: ceil(3 / 2) + 1 = 3
        assert_eq!(Axis::new(5, 2, 2, 0, 0, 1, true).output, 3);
        assert_eq!(Axis::new(3, 5, 1, 0, 0, 1, false).output, 0);
    }
}
