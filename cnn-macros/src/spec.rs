//! A layer's options resolved into what it is: a conv, a pool, ... with
//! every default filled in. The windows it slides come from here too.

use cnn_shape::{Rounding, Window};

use crate::ast::{Act, Pair};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    Explicit(Pair),
    Same,
}

/// A convolution as written; `*_at` are option indices, for spans and fixes.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    pub cin: Option<(usize, usize)>,
    pub cout: usize,
    pub kernel: Pair,
    pub stride: Pair,
    pub padding: Padding,
    pub padding_at: Option<usize>,
    pub dilation: Pair,
    pub groups: usize,
    pub groups_at: Option<usize>,
    pub bias: bool,
    pub floor: bool,
    pub act: Option<Act>,
}

/// A max or average pool as written.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub max: bool,
    pub kernel: Pair,
    /// `maxpool 2` rather than `maxpool k2`: fixes are written the same way.
    pub bare_kernel: bool,
    pub stride: Pair,
    pub pad: Pair,
    pub pad_at: Option<usize>,
    pub rounding: Rounding,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Input(usize, usize, usize),
    Conv(ConvSpec),
    Pool(PoolSpec),
    GlobalPool {
        max: bool,
    },
    Flatten,
    Dense {
        inputs: Option<(Vec<usize>, usize)>,
        outputs: usize,
        bias: bool,
        act: Option<Act>,
    },
    BatchNorm {
        eps: f64,
    },
    Dropout(f64),
    /// Height and width factors.
    Upsample(usize, usize),
    Act(Act),
}

impl ConvSpec {
    /// The windows of a convolution on an `h x w` input; `same` pads
    /// `d(k - 1)` in all, the odd cell after, as PyTorch.
    pub fn axes(&self, h: usize, w: usize) -> (Window, Window) {
        let c = self;
        let axis = |input, kernel: usize, stride, pad, dilation: usize| {
            let (pad_before, pad_after) = match c.padding {
                Padding::Explicit(_) => (pad, pad),
                Padding::Same => {
                    let total = dilation.saturating_mul(kernel - 1);
                    (total / 2, total - total / 2)
                }
            };
            Window { input, kernel, stride, pad_before, pad_after, dilation }
        };
        let (ph, pw) = match c.padding {
            Padding::Explicit(p) => p,
            Padding::Same => (0, 0),
        };
        (axis(h, c.kernel.0, c.stride.0, ph, c.dilation.0), axis(w, c.kernel.1, c.stride.1, pw, c.dilation.1))
    }
}

impl PoolSpec {
    /// The windows of a pool on an `h x w` input.
    pub fn axes(&self, h: usize, w: usize) -> (Window, Window) {
        let p = self;
        let axis = |input, kernel, stride, pad| Window {
            input,
            kernel,
            stride,
            pad_before: pad,
            pad_after: pad,
            dilation: 1,
        };
        (axis(h, p.kernel.0, p.stride.0, p.pad.0), axis(w, p.kernel.1, p.stride.1, p.pad.1))
    }
}
