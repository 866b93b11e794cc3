//! What a conv or dense layer does to its output while it is still in cache:
//! bias, a following batchnorm, a following activation.

use super::{Activation, Apply, BatchNorm};
use crate::gemm_narrow::Finish;

/// `y = act(x * scale + shift)` per output channel.
#[derive(Clone, Debug, Default)]
pub(crate) struct Epilogue {
    /// `None` means 1: no batchnorm.
    pub scale: Option<Vec<f32>>,
    /// Bias, or bias and batchnorm shift together; `None` means 0.
    pub shift: Option<Vec<f32>>,
    pub activation: Option<Activation>,
}

impl Epilogue {
    /// The bias of a layer, then optionally a batchnorm (inference mode)
    /// and an activation: `bn(x + b) = x * s + (b * s + beta - mean * s)`.
    pub fn new(
        bias: Option<&[f32]>,
        batchnorm: Option<&BatchNorm>,
        activation: Option<Activation>,
    ) -> Epilogue {
        let mut epilogue = Epilogue::default();
        epilogue.set(bias, batchnorm, activation);
        epilogue
    }

    /// As [`new`](Self::new), reusing this epilogue's vectors.
    pub fn set(
        &mut self,
        bias: Option<&[f32]>,
        batchnorm: Option<&BatchNorm>,
        activation: Option<Activation>,
    ) {
        self.activation = activation;
        let Some(bn) = batchnorm else {
            self.scale = None;
            match (bias, &mut self.shift) {
                (Some(bias), Some(shift)) => refill(shift, bias.iter().copied()),
                (bias, shift) => *shift = bias.map(<[f32]>::to_vec),
            }
            return;
        };
        let (scale, shift) =
            (self.scale.get_or_insert_with(Vec::new), self.shift.get_or_insert_with(Vec::new));
        bn.scale_shift_into(scale, shift);
        if let Some(bias) = bias {
            shift.iter_mut().zip(bias).zip(scale.iter()).for_each(|((t, b), s)| *t += b * s);
        }
    }

    /// Applies to rows of `channels` values.
    pub fn apply(&self, values: &mut [f32], channels: usize) {
        crate::cpu::vectorized(
            #[inline(always)]
            || {
                self.scale_shift(values, channels);
                if let Some(activation) = self.activation {
                    activation.apply(values, channels);
                }
            },
        )
    }

    /// What the GEMM kernels apply as they store their sums, and the
    /// activation left to apply after them, if any.
    pub fn finish(&self) -> (Finish<'_>, Option<Activation>) {
        let (taken, left) = match self.activation {
            Some(activation) if Finish::takes(activation) => (Some(activation), None),
            activation => (None, activation),
        };
        let (scale, shift) = (self.scale.as_deref(), self.shift.as_deref());
        (Finish { scale, shift, activation: taken, accumulate: false }, left)
    }
}

/// Applies `activation` to columns `columns` of rows `stride` values long:
/// a concat's branch written into its channels of the block's output.
pub(crate) fn activate_columns(
    activation: Option<Activation>,
    values: &mut [f32],
    stride: usize,
    columns: std::ops::Range<usize>,
) {
    let Some(activation) = activation else { return };
    crate::cpu::vectorized(
        #[inline(always)]
        || match columns.len() == stride {
            true => activation.apply(values, stride),
            false => values.chunks_exact_mut(stride).for_each(|row| {
                let row = &mut row[columns.clone()];
                activation.apply(row, row.len())
            }),
        },
    )
}

impl Epilogue {
    /// `x * scale + shift` on rows of `channels` values.
    #[inline(always)]
    fn scale_shift(&self, values: &mut [f32], channels: usize) {
        match (&self.scale, &self.shift) {
            (Some(scale), Some(shift)) => {
                for row in values.chunks_exact_mut(channels) {
                    for ((v, s), t) in row.iter_mut().zip(scale).zip(shift) {
                        *v = *v * s + t;
                    }
                }
            }
            (None, Some(shift)) => {
                for row in values.chunks_exact_mut(channels) {
                    row.iter_mut().zip(shift).for_each(|(v, t)| *v += t);
                }
            }
            (Some(scale), None) => {
                for row in values.chunks_exact_mut(channels) {
                    row.iter_mut().zip(scale).for_each(|(v, s)| *v *= s);
                }
            }
            (None, None) => {}
        }
    }

    /// Applies to `rows`, row `o` all values of output channel `first + o`,
    /// except a softmax, which needs all channels: see
    /// [`apply_across_channels`](Self::apply_across_channels). The
    /// activation runs over all rows at once: a tanh is a long chain of
    /// dependent operations, which the CPU overlaps only across a loop.
    #[inline(always)]
    pub fn apply_to_channels<const L: usize>(&self, rows: &mut [[f32; L]], first: usize) {
        for (o, values) in rows.iter_mut().enumerate() {
            let scale = self.scale.as_ref().map_or(1.0, |s| s[first + o]);
            let shift = self.shift.as_ref().map_or(0.0, |t| t[first + o]);
            if self.scale.is_some() {
                values.iter_mut().for_each(|v| *v = *v * scale + shift);
            } else if self.shift.is_some() {
                values.iter_mut().for_each(|v| *v += shift);
            }
        }
        match self.activation {
            Some(Activation::Softmax) | None => {}
            Some(activation) => activation.apply(rows.as_flattened_mut(), 1),
        }
    }

    /// What [`apply_to_channels`](Self::apply_to_channels) leaves out, on
    /// rows of `channels` values.
    pub fn apply_across_channels(&self, values: &mut [f32], channels: usize) {
        if self.activation == Some(Activation::Softmax) {
            Activation::Softmax.apply(values, channels);
        }
    }
}

/// Replaces the contents of `vec`, keeping its allocation.
pub(crate) fn refill(vec: &mut Vec<f32>, values: impl IntoIterator<Item = f32>) {
    vec.clear();
    vec.extend(values);
}

/// Where the last layer of a block's branch puts its output.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Destination<'a> {
    /// Its own output, whole.
    #[default]
    Whole,
    /// Its own output, the residual added after the epilogue.
    AddTo(Residual<'a>),
    /// Columns `offset..offset + COUT` of rows `stride` long: a concat's
    /// output, the branch's channels of it.
    Columns { stride: usize, offset: usize },
}

/// A residual block's addition, run on a tile of the body's last layer
/// right after its epilogue: `act(tile + shortcut)`, the shortcut's values
/// (the block's input, or its projection) for the whole output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Residual<'a> {
    pub shortcut: &'a [f32],
    pub activation: Option<Activation>,
}

impl Residual<'_> {
    /// Adds to `tile`, the output's values from `offset` on, rows of `channels`.
    pub fn apply(&self, tile: &mut [f32], offset: usize, channels: usize) {
        crate::cpu::vectorized(
            #[inline(always)]
            || {
                let shortcut = &self.shortcut[offset..offset + tile.len()];
                tile.iter_mut().zip(shortcut).for_each(|(v, s)| *v += s);
                if let Some(activation) = self.activation {
                    activation.apply(tile, channels);
                }
            },
        )
    }
}
