//! The inference pass of a generated network: its layers in order, run over
//! two buffers in turn, a chunk of the batch at a time. A batchnorm and an
//! activation right after a conv or dense layer run in that layer's
//! epilogue, on each tile while it is in cache; the running statistics are
//! read each pass, so weights changed by hand are always used. The last
//! layer that makes new values writes straight into the output, the pass's
//! only allocation once the workspace has grown.

use ndarray::{Array2, Array4, ArrayView4};
use rayon::prelude::*;

use crate::Shape;
use crate::layers::{Activation, AvgPool2d, BatchNorm, Conv2d, Dense, Epilogue, MaxPool2d, global_pool};
use crate::workspace::{Buffers, ThreadBuffers, Workspace};

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

/// The bytes the largest activation of a chunk of images may take: the
/// chunk's layers then read and write in L2 rather than in memory.
const CHUNK_BYTES: usize = 512 * 1024;

/// Runs `steps` on a batch `(N, H, W, C)` and returns the values of the
/// outputs, image after image.
///
/// The batch goes through the network a chunk of images at a time, as many
/// as keep the largest activation within `CHUNK_BYTES`: a conv whose output
/// is a few MB would otherwise spend more time writing it to memory, and
/// the next layer reading it back, than computing it. The chunks are shared
/// between rayon's threads, each with buffers of its own; a batch of fewer
/// images than threads shares each layer's tiles instead. Every image's
/// values are computed the same way whatever its chunk and thread.
pub fn infer(steps: &[Step<'_>], x: ArrayView4<'_, f32>, workspace: &Workspace) -> Vec<f32> {
    let (n, h, w, c) = x.dim();
    let x = x.as_standard_layout();
    let input = x.as_slice().expect("standard layout is contiguous");
    let (mut shape, mut largest) = (Shape::Hwc(h, w, c), h * w * c);
    for step in steps {
        shape = next_shape(step, shape);
        largest = largest.max(shape.len());
    }
    let mut output = vec![0.0f32; n * shape.len()];
    // Lengths to cut whole images by; neither is 0 in a network the macro made.
    let (in_len, out_len) = ((h * w * c).max(1), shape.len().max(1));
    if n == 0 {
        return output;
    }
    // At least a chunk per thread, and a whole number of chunks each.
    let threads = rayon::current_num_threads().min(n);
    let chunks = (n * largest * size_of::<f32>()).div_ceil(CHUNK_BYTES).max(threads);
    let images = n.div_ceil(chunks.next_multiple_of(threads));
    let per_thread = n.div_ceil(images).div_ceil(threads) * images;
    workspace.with(|Buffers { epilogues, threads: buffers }| {
        set_epilogues(steps, epilogues);
        let epilogues = &epilogues[..];
        let run = |(input, output): (&[f32], &mut [f32]), buffers: &mut ThreadBuffers| {
            for (input, output) in input.chunks(images * in_len).zip(output.chunks_mut(images * out_len)) {
                let (n, len) = (input.len() / in_len, input.len());
                Pass { steps, epilogues, n, input, buffers, output, at: At::Input, len }
                    .run(Shape::Hwc(h, w, c));
            }
        };
        if buffers.len() < threads {
            buffers.resize_with(threads, ThreadBuffers::default);
        }
        if threads == 1 {
            return run((input, &mut output), &mut buffers[0]);
        }
        (input.par_chunks(per_thread * in_len).zip(output.par_chunks_mut(per_thread * out_len)))
            .zip(buffers.par_iter_mut())
            .for_each(|(part, buffers)| run(part, buffers));
    });
    output
}

/// Each step's epilogue, once for every chunk of the pass: a conv's or
/// dense layer's with the batchnorm and activation after it, a batchnorm's
/// own; none for the rest.
fn set_epilogues(steps: &[Step<'_>], epilogues: &mut Vec<Epilogue>) {
    epilogues.resize_with(steps.len(), Epilogue::default);
    for (i, (step, epilogue)) in steps.iter().zip(epilogues).enumerate() {
        let (bn, act, _) = fusable(steps, i);
        match *step {
            Step::Conv(conv) => epilogue.set(conv.bias.as_ref().and_then(|b| b.as_slice()), bn, act),
            Step::Dense(dense) => epilogue.set(dense.bias.as_ref().and_then(|b| b.as_slice()), bn, act),
            Step::BatchNorm(bn) => epilogue.set(None, Some(bn), None),
            _ => {}
        }
    }
}

/// The shape `step` turns `shape` into.
fn next_shape(step: &Step<'_>, shape: Shape) -> Shape {
    let c = shape.channels();
    match *step {
        Step::Conv(conv) => {
            let g = conv.geometry();
            Shape::Hwc(g.height.output, g.width.output, g.out_channels)
        }
        Step::Dense(dense) => Shape::Flat(dense.weight.dim().1),
        Step::MaxPool(pool) => Shape::Hwc(pool.height.output, pool.width.output, c),
        Step::AvgPool(pool) => Shape::Hwc(pool.height.output, pool.width.output, c),
        Step::GlobalAvgPool | Step::GlobalMaxPool => Shape::Flat(c),
        Step::Flatten => Shape::Flat(shape.len()),
        Step::Dropout | Step::BatchNorm(_) | Step::Act(_) => shape,
    }
}

struct Pass<'s, 'x, 'b> {
    steps: &'s [Step<'s>],
    /// From [`set_epilogues`].
    epilogues: &'s [Epilogue],
    n: usize,
    input: &'x [f32],
    buffers: &'b mut ThreadBuffers,
    /// Where the chunk's outputs go.
    output: &'x mut [f32],
    at: At,
    /// How many values the current step holds: buffers keep their largest
    /// length, so that reusing them writes no zeros.
    len: usize,
}

impl Pass<'_, '_, '_> {
    fn run(mut self, mut shape: Shape) {
        let last_producer = self.steps.iter().rposition(Step::produces);
        let mut i = 0;
        while i < self.steps.len() {
            let last = last_producer == Some(i);
            let next = next_shape(&self.steps[i], shape);
            let len = self.n * next.len();
            match self.steps[i] {
                Step::Conv(conv) => {
                    let (epilogue, mut scratch) =
                        (&self.epilogues[i], std::mem::take(&mut self.buffers.scratch));
                    self.produce(len, last, |src, dst| conv.run(src, dst, &mut scratch, epilogue));
                    self.buffers.scratch = scratch;
                    i += fusable(self.steps, i).2;
                }
                Step::Dense(dense) => {
                    let epilogue = &self.epilogues[i];
                    self.produce(len, last, |src, dst| dense.run(src, dst, epilogue));
                    i += fusable(self.steps, i).2;
                }
                Step::MaxPool(pool) => {
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    self.produce(len, last, |src, dst| pool.run(src, shape.channels(), dst, &mut scratch));
                    self.buffers.scratch = scratch;
                }
                Step::AvgPool(pool) => {
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    self.produce(len, last, |src, dst| pool.run(src, shape.channels(), dst, &mut scratch));
                    self.buffers.scratch = scratch;
                }
                Step::GlobalAvgPool | Step::GlobalMaxPool => {
                    let (c, cells) = (shape.channels(), shape.len() / shape.channels().max(1));
                    let max = matches!(self.steps[i], Step::GlobalMaxPool);
                    self.produce(len, last, |src, dst| global_pool(src, cells, c, dst, max));
                }
                Step::Flatten | Step::Dropout => {}
                Step::BatchNorm(_) => {
                    let (epilogue, later_producer) =
                        (&self.epilogues[i], last_producer.is_some_and(|p| p > i));
                    epilogue.apply(self.in_place(later_producer), shape.channels());
                }
                Step::Act(act) => {
                    let later_producer = last_producer.is_some_and(|p| p > i);
                    act.apply(self.in_place(later_producer), shape.channels());
                }
            }
            // A fused batchnorm or activation keeps the shape.
            shape = next;
            i += 1;
        }
        match self.at {
            At::Output => {}
            At::Input => self.output.copy_from_slice(self.input),
            At::Buffer(k) => self.output.copy_from_slice(&self.buffers.activations[k][..self.len]),
        }
    }

    /// Runs `write(source, destination)` into `len` new values: the output
    /// for the last producing step, else the buffer not being read.
    fn produce(&mut self, len: usize, last: bool, write: impl FnOnce(&[f32], &mut [f32])) {
        let [first, second] = &mut self.buffers.activations;
        let (source, destination, at): (&[f32], &mut [f32], At) = match (self.at, last) {
            (At::Input, true) => (self.input, self.output, At::Output),
            (At::Buffer(0), true) => (first, self.output, At::Output),
            (At::Buffer(_), true) => (second, self.output, At::Output),
            (At::Input, false) => (self.input, grown(first, len), At::Buffer(0)),
            (At::Buffer(0), false) => (first, grown(second, len), At::Buffer(1)),
            (At::Buffer(_), false) => (second, grown(first, len), At::Buffer(0)),
            (At::Output, _) => unreachable!("nothing is produced after the last producer"),
        };
        write(&source[..self.len], &mut destination[..len]);
        (self.at, self.len) = (at, len);
    }

    /// The current values, writable: copied out of the input first if need be.
    fn in_place(&mut self, later_producer: bool) -> &mut [f32] {
        if self.at == At::Input {
            if later_producer {
                let buffer = &mut self.buffers.activations[0];
                buffer.clear();
                buffer.extend_from_slice(self.input);
                self.at = At::Buffer(0);
            } else {
                self.output.copy_from_slice(self.input);
                self.at = At::Output;
            }
        }
        match self.at {
            At::Buffer(k) => &mut self.buffers.activations[k][..self.len],
            _ => &mut self.output[..self.len],
        }
    }
}

/// `buffer`, grown to at least `len` values.
fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    buffer
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
