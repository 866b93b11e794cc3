//! The inference pass of a generated network: its layers in order, run over
//! two buffers in turn. A batchnorm and an activation right after a conv or
//! dense layer run in that layer's epilogue, on each tile while it is in
//! cache; the running statistics are read each pass, so weights changed by
//! hand are always used. The last layer that makes new values writes into a
//! fresh vector, the pass's only allocation once the workspace has grown.

use ndarray::{Array2, Array4, ArrayView4};

use crate::Shape;
use crate::layers::{Activation, AvgPool2d, BatchNorm, Conv2d, Dense, Epilogue, MaxPool2d, global_pool};
use crate::workspace::{Buffers, Workspace};

/// One layer of the pass, as the generated code lists them.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Conv(&'a Conv2d),
    Dense(&'a Dense),
    BatchNorm(&'a BatchNorm),
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    GlobalAvgPool,
    GlobalMaxPool,
    Flatten,
    Dropout,
    Act(Activation),
}

impl Step<'_> {
    /// Whether the step writes new values rather than changing them in place.
    fn produces(&self) -> bool {
        matches!(
            self,
            Step::Conv(_)
                | Step::Dense(_)
                | Step::MaxPool(_)
                | Step::AvgPool(_)
                | Step::GlobalAvgPool
                | Step::GlobalMaxPool
        )
    }
}

/// Where the current values are.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Input,
    Buffer(usize),
    Output,
}

/// Runs `steps` on a batch `(N, H, W, C)` and returns the values of the
/// outputs, image after image.
pub fn infer(steps: &[Step<'_>], x: ArrayView4<'_, f32>, workspace: &Workspace) -> Vec<f32> {
    let (n, h, w, c) = x.dim();
    let x = x.as_standard_layout();
    let input = x.as_slice().expect("standard layout is contiguous");
    workspace.with(|buffers| {
        Pass { steps, n, input, buffers, output: Vec::new(), at: At::Input, len: input.len() }
            .run(Shape::Hwc(h, w, c))
    })
}

struct Pass<'s, 'x, 'b> {
    steps: &'s [Step<'s>],
    n: usize,
    input: &'x [f32],
    buffers: &'b mut Buffers,
    output: Vec<f32>,
    at: At,
    /// How many values the current step holds: buffers keep their largest
    /// length, so that reusing them writes no zeros.
    len: usize,
}

impl Pass<'_, '_, '_> {
    fn run(mut self, mut shape: Shape) -> Vec<f32> {
        let last_producer = self.steps.iter().rposition(Step::produces);
        self.buffers.epilogues.resize_with(self.steps.len(), Epilogue::default);
        let mut i = 0;
        while i < self.steps.len() {
            let last = last_producer == Some(i);
            match self.steps[i] {
                Step::Conv(conv) => {
                    let (bn, act, fused) = fusable(self.steps, i);
                    self.buffers.epilogues[i].set(conv.bias.as_ref().and_then(|b| b.as_slice()), bn, act);
                    let g = conv.geometry();
                    let epilogue = std::mem::take(&mut self.buffers.epilogues[i]);
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    self.produce(self.n * g.output_len(), last, |src, dst| {
                        conv.run(src, dst, &mut scratch, &epilogue)
                    });
                    (self.buffers.scratch, self.buffers.epilogues[i]) = (scratch, epilogue);
                    shape = Shape::Hwc(g.height.output, g.width.output, g.out_channels);
                    i += fused;
                }
                Step::Dense(dense) => {
                    let (bn, act, fused) = fusable(self.steps, i);
                    self.buffers.epilogues[i].set(dense.bias.as_ref().and_then(|b| b.as_slice()), bn, act);
                    let epilogue = std::mem::take(&mut self.buffers.epilogues[i]);
                    let outputs = dense.weight.dim().1;
                    self.produce(self.n * outputs, last, |src, dst| dense.run(src, dst, &epilogue));
                    self.buffers.epilogues[i] = epilogue;
                    shape = Shape::Flat(outputs);
                    i += fused;
                }
                Step::MaxPool(pool) => {
                    let c = shape.channels();
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    self.produce(self.n * pool.height.output * pool.width.output * c, last, |src, dst| {
                        pool.run(src, c, dst, &mut scratch)
                    });
                    self.buffers.scratch = scratch;
                    shape = Shape::Hwc(pool.height.output, pool.width.output, c);
                }
                Step::AvgPool(pool) => {
                    let c = shape.channels();
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    self.produce(self.n * pool.height.output * pool.width.output * c, last, |src, dst| {
                        pool.run(src, c, dst, &mut scratch)
                    });
                    self.buffers.scratch = scratch;
                    shape = Shape::Hwc(pool.height.output, pool.width.output, c);
                }
                Step::GlobalAvgPool | Step::GlobalMaxPool => {
                    let (c, cells) = (shape.channels(), shape.len() / shape.channels().max(1));
                    let max = matches!(self.steps[i], Step::GlobalMaxPool);
                    self.produce(self.n * c, last, |src, dst| global_pool(src, cells, c, dst, max));
                    shape = Shape::Flat(c);
                }
                Step::Flatten => shape = Shape::Flat(shape.len()),
                Step::Dropout => {}
                Step::BatchNorm(bn) => {
                    let epilogue = &mut self.buffers.epilogues[i];
                    epilogue.set(None, Some(bn), None);
                    let epilogue = std::mem::take(epilogue);
                    let later_producer = last_producer.is_some_and(|p| p > i);
                    epilogue.apply(self.in_place(later_producer), shape.channels());
                    self.buffers.epilogues[i] = epilogue;
                }
                Step::Act(act) => {
                    let later_producer = last_producer.is_some_and(|p| p > i);
                    act.apply(self.in_place(later_producer), shape.channels());
                }
            }
            i += 1;
        }
        match self.at {
            At::Output => self.output,
            At::Input => self.input.to_vec(),
            At::Buffer(k) => self.buffers.activations[k][..self.len].to_vec(),
        }
    }

    /// Runs `write(source, destination)` into `len` new values: the output
    /// vector for the last producing step, else the buffer not being read.
    fn produce(&mut self, len: usize, last: bool, write: impl FnOnce(&[f32], &mut [f32])) {
        let [first, second] = &mut self.buffers.activations;
        let (source, destination, at): (&[f32], &mut Vec<f32>, At) = match (self.at, last) {
            (At::Input, true) => (self.input, &mut self.output, At::Output),
            (At::Input, false) => (self.input, first, At::Buffer(0)),
            (At::Buffer(0), true) => (first, &mut self.output, At::Output),
            (At::Buffer(0), false) => (first, second, At::Buffer(1)),
            (At::Buffer(_), true) => (second, &mut self.output, At::Output),
            (At::Buffer(_), false) => (second, first, At::Buffer(0)),
            (At::Output, _) => unreachable!("nothing is produced after the last producer"),
        };
        if destination.len() < len {
            destination.resize(len, 0.0);
        }
        write(&source[..self.len], &mut destination[..len]);
        (self.at, self.len) = (at, len);
    }

    /// The current values, writable: copied out of the input first if need be.
    fn in_place(&mut self, later_producer: bool) -> &mut [f32] {
        if self.at == At::Input {
            let destination =
                if later_producer { &mut self.buffers.activations[0] } else { &mut self.output };
            destination.clear();
            destination.extend_from_slice(self.input);
            self.at = if later_producer { At::Buffer(0) } else { At::Output };
        }
        match self.at {
            At::Buffer(k) => &mut self.buffers.activations[k][..self.len],
            _ => &mut self.output[..self.len],
        }
    }
}

/// The batchnorm and activation right after step `i`, and how many steps they are.
fn fusable<'s>(steps: &'s [Step<'s>], i: usize) -> (Option<&'s BatchNorm>, Option<Activation>, usize) {
    let mut rest = steps[i + 1..].iter();
    let mut next = rest.next();
    let bn = match next {
        Some(Step::BatchNorm(bn)) => {
            next = rest.next();
            Some(*bn)
        }
        _ => None,
    };
    let act = match next {
        Some(Step::Act(act)) => Some(*act),
        _ => None,
    };
    (bn, act, bn.is_some() as usize + act.is_some() as usize)
}

/// The values of a flat output as `(N, F)`.
pub fn into_array2(values: Vec<f32>, shape: (usize, usize)) -> Array2<f32> {
    // The pass made exactly N*F values: the macro worked the shapes out.
    Array2::from_shape_vec(shape, values).expect("the pass gives N*F values")
}

/// The values of a spatial output as `(N, H, W, C)`.
pub fn into_array4(values: Vec<f32>, shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_vec(shape, values).expect("the pass gives N*H*W*C values")
}
