//! The tensors behind a layer's accessors: kept in standard layout with
//! the shape the layer was made with, whatever a user writes through them.

use ndarray::{Array, Dimension};

use crate::Error;

/// The values of a tensor the layer keeps in standard layout.
pub(crate) fn values<D: Dimension>(a: &Array<f32, D>) -> &[f32] {
    a.as_slice().expect("layers keep their tensors in standard layout")
}

pub(crate) fn values_mut<D: Dimension>(a: &mut Array<f32, D>) -> &mut [f32] {
    a.as_slice_mut().expect("layers keep their tensors in standard layout")
}

/// Puts `new` in the place of `current` if it has the same shape.
pub(crate) fn replace<D: Dimension>(
    current: &mut Array<f32, D>,
    new: Array<f32, D>,
    tensor: &'static str,
) -> Result<(), Error> {
    if new.shape() != current.shape() {
        let (expected, found) = (current.shape().to_vec(), new.shape().to_vec());
        return Err(Error::ParameterShape { tensor, expected, found });
    }
    *current = if new.is_standard_layout() { new } else { new.as_standard_layout().into_owned() };
    Ok(())
}

/// Checks that `x` holds a batch of inputs of shape `expected`.
pub(crate) fn check_input<D: Dimension>(
    x: &ndarray::ArrayView<'_, f32, D>,
    expected: impl AsRef<[usize]>,
    layer: &'static str,
) -> Result<(), Error> {
    let expected = expected.as_ref();
    if x.shape().get(1..) == Some(expected) {
        return Ok(());
    }
    Err(Error::LayerInput { layer, expected: expected.to_vec(), found: x.shape().to_vec() })
}

/// `len` values of `buffer`, grown as needed, from a 64-byte boundary: a
/// vector load that straddles two cache lines costs two (an allocation is
/// only 16-byte aligned), and the GEMM kernels load their B by whole
/// vectors, rows `COUT` values apart.
pub(crate) fn line_aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(buffer.len().max(len + LINE), 0.0);
    let skip = to_line(buffer);
    &mut buffer[skip..skip + len]
}

/// Floats a cache line holds.
const LINE: usize = 64 / size_of::<f32>();

/// Where the values of `buffer` from a 64-byte boundary start, as
/// [`line_aligned`] gave them.
pub(crate) fn to_line(buffer: &[f32]) -> usize {
    buffer.as_ptr().align_offset(64).min(LINE)
}
