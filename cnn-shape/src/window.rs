//! The sliding window along one spatial axis, shared by convolution and
//! pooling.
//!
//! For each axis, with input `n`, kernel `k`, stride `s`, padding `pb` before
//! and `pa` after, dilation `d`:
//!
//! ```text
//! span = n + pb + pa - d(k - 1) - 1
//! out  = span / s + 1          exact when span % s == 0
//! ```
//!
//! `floor` rounds down; `ceil` rounds up unless the last window would then
//! start past the input and its left padding (PyTorch's `ceil_mode`).
//! Window `o` covers input positions `o*s - pb + i*d` for `i < k`; positions
//! outside `0..n` are padding.

use std::fmt;

/// How a size that is not a whole number is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    Exact,
    Floor,
    Ceil,
}

/// One axis of a sliding window, before its output size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_before: usize,
    pub pad_after: usize,
    pub dilation: usize,
}

/// Why an axis has no output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// The (dilated) kernel is larger than the padded input: `span < 0`.
    DoesNotFit { span: i128 },
    /// `span % stride != 0` and the layer asked for an exact size.
    Fractional { span: i128 },
    /// A size does not fit in `usize`.
    Overflow,
}

impl Window {
    /// The dilated extent of the kernel, `d(k - 1) + 1`.
    pub fn reach(&self) -> Option<i128> {
        (self.dilation as i128).checked_mul(self.kernel as i128 - 1)?.checked_add(1)
    }

    /// `n + pb + pa - d(k - 1) - 1`; negative when the kernel does not fit.
    pub fn span(&self) -> Option<i128> {
        let padded = self.input as i128 + self.pad_before as i128 + self.pad_after as i128;
        padded.checked_sub(self.reach()?)
    }

    /// The exact quotient `span / s + 1`, for messages: `11.5`.
    pub fn exact_output(&self) -> Option<Ratio> {
        let span = self.span()?;
        Some(Ratio { num: span + self.stride as i128, den: self.stride as i128 })
    }
}

/// The number of output positions along one axis.
pub fn out_size(w: &Window, rounding: Rounding) -> Result<usize, SizeError> {
    if w.stride == 0 || w.kernel == 0 || w.dilation == 0 {
        return Err(SizeError::DoesNotFit { span: -1 });
    }
    let span = w.span().ok_or(SizeError::Overflow)?;
    if span < 0 {
        return Err(SizeError::DoesNotFit { span });
    }
    let s = w.stride as i128;
    let out = match rounding {
        Rounding::Exact if span % s != 0 => return Err(SizeError::Fractional { span }),
        Rounding::Exact | Rounding::Floor => span / s + 1,
        Rounding::Ceil => {
            let out = (span + s - 1) / s + 1;
            if (out - 1) * s >= w.input as i128 + w.pad_before as i128 { out - 1 } else { out }
        }
    };
    usize::try_from(out).map_err(|_| SizeError::Overflow)
}

/// One axis of a window with its output size worked out: what the plan
/// holds and the kernels read.
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
    /// The axis of `window`, its output size from [`out_size`].
    pub fn new(window: Window, rounding: Rounding) -> Result<Axis, SizeError> {
        let output = out_size(&window, rounding)?;
        let Window { input, kernel, stride, pad_before, pad_after, dilation } = window;
        Ok(Axis { input, kernel, stride, pad_before, pad_after, dilation, output })
    }

    /// The window, without its output size.
    pub const fn window(&self) -> Window {
        let Axis { input, kernel, stride, pad_before, pad_after, dilation, .. } = *self;
        Window { input, kernel, stride, pad_before, pad_after, dilation }
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

/// A fraction shown as a decimal: `23 / 2` as `11.5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub num: i128,
    pub den: i128,
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num % self.den == 0 {
            return write!(f, "{}", self.num / self.den);
        }
        let text = format!("{:.2}", self.num as f64 / self.den as f64);
        f.write_str(text.trim_end_matches('0'))
    }
}

/// `a * b * ...`, or `None` on overflow.
pub fn product(factors: &[usize]) -> Option<usize> {
    factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(input: usize, kernel: usize, stride: usize, pad: usize, dilation: usize) -> Window {
        Window { input, kernel, stride, pad_before: pad, pad_after: pad, dilation }
    }

    #[test]
    fn the_classic_cases() {
        let w = window(28, 7, 2, 0, 1);
        assert_eq!(out_size(&w, Rounding::Exact), Err(SizeError::Fractional { span: 21 }));
        assert_eq!(w.exact_output().unwrap().to_string(), "11.5");
        assert_eq!(out_size(&w, Rounding::Floor), Ok(11));
        assert_eq!(out_size(&window(32, 7, 2, 0, 1), Rounding::Floor), Ok(13));
        assert_eq!(out_size(&window(28, 5, 1, 2, 1), Rounding::Exact), Ok(28));
        assert_eq!(
            out_size(&window(5, 7, 1, 0, 1), Rounding::Exact),
            Err(SizeError::DoesNotFit { span: -2 })
        );
        assert_eq!(
            out_size(&window(usize::MAX, 1, 1, usize::MAX, 1), Rounding::Exact),
            Err(SizeError::Overflow)
        );
        assert_eq!(Ratio { num: 28, den: 3 }.to_string(), "9.33");
    }

    #[test]
    fn follows_pytorch_ceil_mode() {
        let ceil = |n, k, s, p| out_size(&window(n, k, s, p, 1), Rounding::Ceil);
        // nn.MaxPool2d(3, 2, ceil_mode=True) on 6: ceil(3 / 2) + 1 = 3
        assert_eq!(ceil(6, 3, 2, 0), Ok(3));
        // MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5: ceil(5 / 2) + 1 = 4,
        // but window 3 would start at 6 >= 5 + 1, all in the right padding: 3
        assert_eq!(ceil(5, 2, 2, 1), Ok(3));
        // MaxPool2d(2, 2, ceil_mode=True) on 5: ceil(3 / 2) + 1 = 3
        assert_eq!(ceil(5, 2, 2, 0), Ok(3));
    }

    #[test]
    fn an_axis_keeps_its_window() {
        let w = window(28, 5, 2, 2, 1);
        let axis = Axis::new(w, Rounding::Floor).unwrap();
        assert_eq!((axis.window(), axis.output), (w, 14));
        assert_eq!((axis.start(0), axis.tap(0, 0), axis.tap(0, 2)), (-2, None, Some(0)));
    }

    /// Window positions counted one by one, in padded coordinates: window `o`
    /// covers `o*s .. o*s + reach`.
    fn count_windows(w: &Window, rounding: Rounding) -> Option<usize> {
        let padded = w.input + w.pad_before + w.pad_after;
        let reach = w.dilation * (w.kernel - 1) + 1;
        let fits = |o: usize| o * w.stride + reach <= padded;
        let full = (0..).take_while(|&o| fits(o)).count();
        match rounding {
            Rounding::Floor => (full > 0).then_some(full),
            // Exact when the last full window ends exactly at the padded end.
            Rounding::Exact => (full > 0 && (full - 1) * w.stride + reach == padded).then_some(full),
            // Windows may overhang the padded end by less than a stride, if
            // they start inside the input or its left padding.
            Rounding::Ceil => {
                let counted = (0..)
                    .take_while(|&o| o * w.stride + reach < padded + w.stride)
                    .filter(|&o| o * w.stride < w.input + w.pad_before)
                    .count();
                (full > 0).then_some(counted)
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn out_size_counts_window_positions(
            n in 1usize..40, k in 1usize..9, s in 1usize..6, p in 0usize..5, d in 1usize..4,
            rounding in prop_oneof![Just(Rounding::Exact), Just(Rounding::Floor), Just(Rounding::Ceil)],
        ) {
            // Pooling, the only layer that rounds up, pads at most half its kernel.
            prop_assume!(rounding != Rounding::Ceil || p <= k / 2);
            let w = window(n, k, s, p, d);
            prop_assert_eq!(out_size(&w, rounding).ok(), count_windows(&w, rounding));
        }
    }
}
