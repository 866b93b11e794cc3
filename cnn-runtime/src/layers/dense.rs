//! Fully connected layers: one GEMM per batch.

use ndarray::{Array1, Array2, Array4, ArrayView2, Ix1, Ix2};

use super::Epilogue;
use crate::gemm::{self, MatMut, MatRef};
use crate::gemm_narrow;
use crate::init::{self, InitRng};

/// A fully connected layer, `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Dense {
    /// `[IN, OUT]`, the transpose of PyTorch's `[OUT, IN]`, so that the batch
    /// multiplies it directly. After `flatten` the rows run in H, W, C order.
    pub weight: Array2<f32>,
    /// `[OUT]`, or none for `nobias`.
    pub bias: Option<Array1<f32>>,
}

impl Dense {
    /// A dense layer initialised as PyTorch does.
    pub fn new(inputs: usize, outputs: usize, bias: bool, rng: &mut InitRng) -> Dense {
        let weight = init::uniform(Ix2(inputs, outputs), inputs, rng);
        let bias = bias.then(|| init::uniform(Ix1(outputs), inputs, rng));
        Dense { weight, bias }
    }

    /// `(N, IN)` into `(N, OUT)`.
    ///
    /// # Panics
    ///
    /// If the input does not have `IN` features.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let (inputs, outputs) = self.weight.dim();
        assert_eq!(x.shape()[1], inputs, "dense input features");
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        let mut out = vec![0.0f32; n * outputs];
        let epilogue = Epilogue::new(self.bias.as_ref().and_then(|b| b.as_slice()), None, None);
        self.run(x.as_slice().expect("contiguous"), &mut out, &epilogue);
        Array2::from_shape_vec((n, outputs), out).expect("output length is n*out")
    }

    /// The rows of `x` (`IN` values each) into the rows of `out` (`OUT`
    /// each): one GEMM for the batch, then `epilogue` (with the bias).
    ///
    /// # Panics
    ///
    /// If the lengths are not whole rows of the same batch.
    pub fn run(&self, x: &[f32], out: &mut [f32], epilogue: &Epilogue) {
        let (inputs, outputs) = self.weight.dim();
        let n = out.len() / outputs.max(1);
        assert!(x.len() == n * inputs && out.len() == n * outputs, "dense input or output length");
        let weight = self.weight.as_standard_layout();
        let a = MatRef::row_major(x, n, inputs);
        let b = MatRef::row_major(weight.as_slice().expect("contiguous"), inputs, outputs);
        gemm_narrow::multiply(a, b, MatMut::row_major(out, n, outputs));
        epilogue.apply(out, outputs);
    }

    /// The gradients of a batch, given its input `x` and the gradient `dy`
    /// of the output: `dw = x^T dy`, `db` the sum of `dy`'s rows, and
    /// `dx = dy W^T` if wanted; all overwritten.
    pub fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: Option<&mut [f32]>,
    ) {
        let (inputs, outputs) = self.weight.dim();
        let n = dy.len() / outputs.max(1);
        assert!(x.len() == n * inputs && dw.len() == inputs * outputs, "dense backward lengths");
        let x_t = MatRef::transposed(x, inputs, n, inputs);
        let dy = MatRef::row_major(dy, n, outputs);
        gemm::sgemm(1.0, x_t, dy, 0.0, MatMut::row_major(dw, inputs, outputs));
        if let Some(db) = db {
            sum_rows(dy.data, db);
        }
        if let Some(dx) = dx {
            let weight = self.weight.as_standard_layout();
            let w = weight.as_slice().expect("contiguous");
            let w_t = MatRef::transposed(w, outputs, inputs, outputs);
            gemm::sgemm(1.0, dy, w_t, 0.0, MatMut::row_major(dx, n, inputs));
        }
    }
}

/// `sums` becomes the sum of the rows of `rows` (each `sums.len()` long):
/// the gradient of a bias.
pub(super) fn sum_rows(rows: &[f32], sums: &mut [f32]) {
    sums.fill(0.0);
    for row in rows.chunks_exact(sums.len().max(1)) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
}

/// `nn.Flatten()`: `(N, H, W, C)` into `(N, H*W*C)`, in H, W, C order.
pub fn flatten(x: Array4<f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    let x = if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() };
    x.into_shape_with_order((n, h * w * c)).expect("standard layout reshapes")
}
