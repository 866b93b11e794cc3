//! Output memory that nothing has written yet.
//!
//! A pass's output is a new `Vec` each time. Zeroed in front of the pass,
//! a large one (W6's is 12.8 MB) goes out to memory as zeros and comes back
//! for the last layer to overwrite. When that layer is a conv, each of its
//! tiles is instead zeroed just before its kernel writes it, while it is in
//! cache: a layer's output is a slice of [`Slot`]s, `f32` values or fresh
//! memory.

use std::mem::MaybeUninit;

/// What a slice a layer writes whole holds: values already, or fresh memory.
pub(crate) trait Slot: Sized + Send {
    /// `part` as values: zeros where it was fresh memory.
    fn values(part: &mut [Self]) -> &mut [f32];
}

impl Slot for f32 {
    #[inline(always)]
    fn values(part: &mut [f32]) -> &mut [f32] {
        part
    }
}

impl Slot for MaybeUninit<f32> {
    #[inline(always)]
    fn values(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
        zeroed(part)
    }
}

/// `part` filled with zeros, as values.
#[allow(unsafe_code)]
fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every value of `part` was written just above, and
    // `MaybeUninit<f32>` has the size and alignment of `f32`.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_memory_reads_as_zeros_and_values_stay() {
        let mut fresh = [MaybeUninit::<f32>::uninit(); 5];
        assert_eq!(Slot::values(&mut fresh[..]), [0.0; 5]);
        let mut values = [1.0f32, 2.0];
        assert_eq!(Slot::values(&mut values[..]), [1.0, 2.0]);
    }
}
