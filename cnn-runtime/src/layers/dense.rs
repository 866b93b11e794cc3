//! Fully connected layers: one GEMM per batch.

use cnn_shape::{Node, Op};
use ndarray::{Array1, Array2, Array4, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Ix1, Ix2};

use super::epilogue::activate_columns;
use super::{Destination, Epilogue, tensor};
use crate::Error;
use crate::cpu::Kernels;
use crate::gemm::{self, MatMut, MatRef};
use crate::gemm_narrow;
use crate::init::{self, InitRng};

/// A fully connected layer, `nn.Linear`. Its tensors can be changed
/// through views, but not given another shape.
#[derive(Clone, Debug)]
pub struct Dense {
    /// `[IN, OUT]`, the transpose of PyTorch's `[OUT, IN]`, so that the batch
    /// multiplies it directly. After `flatten` the rows run in H, W, C order.
    weight: Array2<f32>,
    /// `[OUT]`, or none for `nobias`.
    bias: Option<Array1<f32>>,
}

impl Dense {
    /// A dense layer initialised as PyTorch does.
    pub fn new(inputs: usize, outputs: usize, bias: bool, rng: &mut InitRng) -> Dense {
        let weight = init::uniform(Ix2(inputs, outputs), inputs, rng);
        let bias = bias.then(|| init::uniform(Ix1(outputs), inputs, rng));
        Dense { weight, bias }
    }

    /// The layer of a plan node, initialised from `rng`.
    #[doc(hidden)]
    pub fn from_node(node: &Node, rng: &mut InitRng) -> Dense {
        let Op::Dense { inputs, outputs, bias } = node.op else {
            unreachable!("the macro pairs dense fields with dense nodes")
        };
        Dense::new(inputs, outputs, bias, rng)
    }

    /// A dense layer with the given weight `[IN, OUT]` and bias `[OUT]`.
    pub fn from_parts(weight: Array2<f32>, bias: Option<Array1<f32>>) -> Result<Dense, Error> {
        let outputs = weight.ncols();
        let mut dense = Dense {
            weight: Array2::zeros(weight.dim()),
            bias: bias.as_ref().map(|_| Array1::zeros(outputs)),
        };
        dense.set_weight(weight)?;
        if let Some(bias) = bias {
            dense.set_bias(bias)?;
        }
        Ok(dense)
    }

    /// `(IN, OUT)`.
    pub fn dim(&self) -> (usize, usize) {
        self.weight.dim()
    }

    /// `[IN, OUT]`.
    pub fn weight(&self) -> ArrayView2<'_, f32> {
        self.weight.view()
    }

    pub fn weight_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        self.weight.view_mut()
    }

    /// Replaces the weight; an error if it is not `[IN, OUT]`.
    pub fn set_weight(&mut self, weight: Array2<f32>) -> Result<(), Error> {
        tensor::replace(&mut self.weight, weight, "dense weight")
    }

    /// `[OUT]`, or `None` for a layer without bias.
    pub fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|b| b.view())
    }

    pub fn bias_mut(&mut self) -> Option<ArrayViewMut1<'_, f32>> {
        self.bias.as_mut().map(|b| b.view_mut())
    }

    /// Replaces the bias; an error if it is not `[OUT]` or the layer has none.
    pub fn set_bias(&mut self, bias: Array1<f32>) -> Result<(), Error> {
        let current = self.bias.as_mut().ok_or(Error::NoBias { layer: "dense layer" })?;
        tensor::replace(current, bias, "dense bias")
    }

    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        std::iter::once(tensor::values_mut(&mut self.weight))
            .chain(self.bias.as_mut().map(tensor::values_mut))
            .collect()
    }

    pub(crate) fn bias_values(&self) -> Option<&[f32]> {
        self.bias.as_ref().map(tensor::values)
    }

    /// `(N, IN)` into `(N, OUT)`; an error for an input of another width.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error> {
        let (inputs, outputs) = self.weight.dim();
        tensor::check_input(&x, [inputs], "dense")?;
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        let mut out = vec![0.0f32; n * outputs];
        let epilogue = Epilogue::new(self.bias_values(), None, None);
        self.run(
            x.as_slice().expect("contiguous"),
            &mut out,
            &epilogue,
            Kernels::Fastest,
            Destination::Whole,
        );
        Ok(Array2::from_shape_vec((n, outputs), out).expect("output length is n*out"))
    }

    /// The rows of `x` (`IN` values each) into the rows of `out` (`OUT`
    /// each): one GEMM for the batch, then `epilogue` (with the bias).
    ///
    /// # Panics
    ///
    /// If the lengths are not whole rows of the same batch.
    pub(crate) fn run(
        &self,
        x: &[f32],
        out: &mut [f32],
        epilogue: &Epilogue,
        kernels: Kernels,
        destination: Destination<'_>,
    ) {
        let (inputs, outputs) = self.weight.dim();
        let n = out.len() / outputs.max(1);
        assert!(x.len() == n * inputs && out.len() == n * outputs, "dense input or output length");
        let a = MatRef::row_major(x, n, inputs);
        let b = MatRef::row_major(tensor::values(&self.weight), inputs, outputs);
        let (finish, left) = epilogue.finish();
        gemm_narrow::multiply(a, b, MatMut::row_major(out, n, outputs), finish, kernels);
        activate_columns(left, out, outputs, 0..outputs);
        match destination {
            Destination::Whole => {}
            Destination::AddTo(residual) => residual.apply(out, 0, outputs),
            Destination::Columns { .. } => unreachable!("a concat's dense branches go through a buffer"),
        }
    }

    /// The gradients of a batch, given its input `x` and the gradient `dy`
    /// of the output: `dw = x^T dy`, `db` the sum of `dy`'s rows, and
    /// `dx = dy W^T` if wanted; all overwritten.
    pub(crate) fn backward(
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
            let w = tensor::values(&self.weight);
            let w_t = MatRef::transposed(w, outputs, inputs, outputs);
            gemm::sgemm(1.0, dy, w_t, 0.0, MatMut::row_major(dx, n, inputs));
        }
    }
}

/// `sums` becomes the sum of the rows of `rows` (each `sums.len()` long):
/// the gradient of a bias.
pub(super) fn sum_rows(rows: &[f32], sums: &mut [f32]) {
    // Rows narrower than a vector (a conv's few channels) are summed
    // sixteen at a time into as many partial sums, whose adds are then
    // whole vectors, and the partial sums folded: one row at a time, the
    // adds were a value at a time.
    const GROUP: usize = 16;
    let len = sums.len().max(1);
    let add = |sums: &mut [f32], row: &[f32]| sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    sums.fill(0.0);
    crate::cpu::vectorized(
        #[inline(always)]
        || {
            if len >= GROUP {
                return rows.chunks_exact(len).for_each(|row| add(sums, row));
            }
            let mut partial = [0.0f32; GROUP * GROUP];
            let partial = &mut partial[..len * GROUP];
            let groups = rows.chunks_exact(len * GROUP);
            let rest = groups.remainder();
            groups.for_each(|group| add(partial, group));
            partial.chunks_exact(len).chain(rest.chunks_exact(len)).for_each(|row| add(sums, row));
        },
    )
}

/// `nn.Flatten()`: `(N, H, W, C)` into `(N, H*W*C)`, in H, W, C order.
pub fn flatten(x: Array4<f32>) -> Array2<f32> {
    let (n, h, w, c) = x.dim();
    let x = if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() };
    x.into_shape_with_order((n, h * w * c)).expect("standard layout reshapes")
}
