//! The inference pass of a generated network: its layers in order, run over
//! two buffers in turn, a chunk of the batch at a time. A batchnorm and an
//! activation right after a conv or dense layer run in that layer's
//! epilogue, on each tile while it is in cache, and so does a `maxpool 2`
//! after a conv of Winograd's tiles; the running statistics are
//! read each pass, so weights changed by hand are always used. The last
//! layer that makes new values writes straight into the output, the pass's
//! only allocation once the workspace has grown.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use cnn_shape::{Node, Op, Plan, Shape};
use ndarray::ArrayView4;

use crate::cpu::Kernels;
use crate::layers::{
    Apply, AvgPool2d, BatchNorm, Conv2d, Dense, Destination, Epilogue, Input, LaidOut, MaxPool2d,
    global_pool, upsample,
};
use crate::workspace::{Buffers, ThreadBuffers, Workspace, alone, zeroed};

mod block;

use block::Block;

/// A network's layer with parameters, as the pass reads it: the plan's
/// nodes name them by their slot.
#[derive(Clone, Copy, Debug)]
pub enum Layer<'a> {
    Conv2d(&'a Conv2d),
    Dense(&'a Dense),
    BatchNorm(&'a BatchNorm),
}

/// A node and, if it has parameters, its layer.
#[derive(Clone, Copy)]
struct Step<'a> {
    node: &'a Node,
    layer: Option<Layer<'a>>,
}

/// The plan's nodes, each paired with its layer when asked for.
#[derive(Clone, Copy)]
struct Steps<'a> {
    nodes: &'a [Node],
    layers: &'a [Layer<'a>],
    /// The index of `nodes[0]` among all the plan's nodes, depth first.
    first: usize,
}

impl<'a> Steps<'a> {
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn get(&self, i: usize) -> Option<Step<'a>> {
        let node = self.nodes.get(i)?;
        Some(Step { node, layer: node.param.map(|p| self.layers[p.slot]) })
    }

    fn iter(self) -> impl Iterator<Item = Step<'a>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<'a> Step<'a> {
    /// Whether the step writes new values rather than changing them in place.
    fn produces(&self) -> bool {
        matches!(
            self.node.op,
            Op::Conv { .. }
                | Op::Dense { .. }
                | Op::MaxPool { .. }
                | Op::AvgPool { .. }
                | Op::GlobalAvgPool
                | Op::GlobalMaxPool
                | Op::Upsample { .. }
                | Op::Residual { .. }
                | Op::Concat { .. }
        )
    }

    fn batchnorm(&self) -> Option<&'a BatchNorm> {
        match self.layer {
            Some(Layer::BatchNorm(bn)) => Some(bn),
            _ => None,
        }
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

/// The chunks a thread takes of a batch shared between threads, where
/// they hold at least `BALANCED_CHUNK_IMAGES` each: a thread slowed down
/// then leaves the others less to wait for. Smaller chunks cost more than
/// they balance: each reads the dense layers' weights again for a few rows.
const CHUNKS_A_THREAD: usize = 3;
const BALANCED_CHUNK_IMAGES: usize = 32;

/// Runs `steps` on a batch `(N, H, W, C)` and returns the values of the
/// outputs, image after image.
///
/// The batch goes through the network a chunk of images at a time, as many
/// as keep the largest activation within `CHUNK_BYTES`: a conv whose output
/// is a few MB would otherwise spend more time writing it to memory, and
/// the next layer reading it back, than computing it. The calling thread
/// and rayon's take the chunks one at a time, each with buffers of its
/// own; a single image shares each layer's tiles instead. The steps from
/// the first on flat values (the dense layers after `flatten`) run in one
/// chunk a thread after the others where, in chunks of a few images, their
/// weights would be read from memory again for every few rows. Every
/// image's values are computed the same way whatever its chunk and thread.
///
/// `x` must hold images of `plan.input`, and `layers` the layers of the
/// plan's slots: the generated code checks the one and makes the other.
pub(crate) fn infer(
    plan: &Plan,
    layers: &[Layer<'_>],
    x: ArrayView4<'_, f32>,
    workspace: &Workspace,
) -> Vec<f32> {
    let n = x.dim().0;
    let x = x.as_standard_layout();
    let input = x.as_slice().expect("standard layout is contiguous");
    let steps = Steps { nodes: plan.nodes, layers, first: 0 };
    let kernels = workspace.kernels();
    let output_shape = plan.nodes.last().map_or(plan.input, |node| node.info.output);
    let len = n * output_shape.len();
    let mut output = Vec::with_capacity(len);
    if n == 0 {
        return output;
    }
    // The spatial steps, chunk by chunk, and the flat ones after them.
    let tail_at = plan.nodes.iter().position(|node| matches!(node.input, Shape::Flat(_)));
    let (head, tail) = match tail_at.filter(|&t| t > 0) {
        Some(t) => {
            let (head, tail) = plan.nodes.split_at(t);
            let first = head.iter().map(Node::size).sum();
            (Steps { nodes: head, ..steps }, Some(Steps { nodes: tail, layers, first }))
        }
        None => (steps, None),
    };
    let head_shape = head.nodes.last().map_or(plan.input, |node| node.info.output);
    let pass = |Buffers { prepared, threads: buffers, flat }: &mut Buffers| {
        prepare(steps, kernels, prepared);
        let prepared = &*prepared;
        let pool = rayon::current_num_threads();
        if buffers.len() < pool {
            buffers.resize_with(pool, ThreadBuffers::default);
        }
        let buffers = &mut buffers[..pool];
        let in_len = plan.input.len();
        let head = Chunks {
            steps: head,
            kernels,
            prepared,
            chunk_bytes: CHUNK_BYTES,
            largest: largest(head.nodes).max(in_len),
        };
        let fresh = &mut output.spare_capacity_mut()[..len];
        // Where a chunk at a time would read the flat steps' weights from
        // memory again and again, more bytes than the head's output that
        // the threads then hand each other.
        let weights = |tail: &Steps<'_>| -> usize {
            let dense = |step: Step<'_>| match step.layer {
                Some(Layer::Dense(dense)) => Some(dense.weight().len()),
                _ => None,
            };
            tail.iter().filter_map(dense).sum()
        };
        let chunks = chunk_sizes(n, head.images(n, pool), pool.min(n)).count();
        let Some(tail) = tail.filter(|tail| chunks * weights(tail) > n * head_shape.len()) else {
            let all = Chunks { steps, largest: largest(plan.nodes).max(in_len), ..head };
            return all.run(input, (in_len, fresh), buffers);
        };
        let flat = &mut grown(flat, n * head_shape.len())[..n * head_shape.len()];
        head.run(input, (in_len, &mut *flat), buffers);
        // A chunk per thread.
        let tail = Chunks { steps: tail, kernels, prepared, chunk_bytes: usize::MAX, largest: 1 };
        tail.run(flat, (head_shape.len(), fresh), buffers);
    };
    // A batch of images on this thread, which takes chunks as rayon's
    // threads do, rather than handing the pass over and sleeping until it
    // is done: the hand-over and the wake-up cost a pass of a third of a
    // millisecond 5-7% on two threads. A single image on one of rayon's,
    // so that each layer's parallel parts start there rather than each
    // being handed to the pool from this thread and waited for.
    match rayon::current_num_threads() > 1 && n == 1 {
        true => rayon::scope(|_| workspace.with(pass)),
        false => workspace.with(pass),
    }
    // SAFETY: the capacity is at least `len`, and the passes wrote each of
    // the first `len` values: a pass writes all of its output
    // (`Pass::run`), through `Output::values` or as the tiles of its last
    // conv, each of which the conv zeroes or its GEMM writes whole.
    #[allow(unsafe_code)]
    unsafe {
        output.set_len(len)
    };
    output
}

/// Steps run on a batch a chunk of images at a time: at least one chunk a
/// thread, and as many as keep a chunk's `largest` activations (values an
/// image) within `chunk_bytes`.
struct Chunks<'s> {
    steps: Steps<'s>,
    kernels: Kernels,
    prepared: &'s Prepared,
    chunk_bytes: usize,
    largest: usize,
}

impl Chunks<'_> {
    /// The images of a chunk of a batch of `n` on `threads` threads: at
    /// least a chunk per thread, and a whole number of chunks each.
    fn images(&self, n: usize, threads: usize) -> usize {
        let threads = threads.min(n).max(1);
        let balanced = threads > 1 && n >= threads * CHUNKS_A_THREAD * BALANCED_CHUNK_IMAGES;
        let per_thread = if balanced { CHUNKS_A_THREAD } else { 1 };
        let chunks =
            (n * self.largest * size_of::<f32>()).div_ceil(self.chunk_bytes).max(threads * per_thread);
        n.div_ceil(chunks.next_multiple_of(threads)).max(1)
    }

    /// Runs the steps on the images `input` (`in_len` values each) into
    /// `output`, fresh or written before, on this thread and rayon's, one
    /// of `buffers` each: each takes the next chunk whenever it is free.
    fn run<'x, T: Send>(
        &self,
        input: &'x [f32],
        (in_len, output): (usize, &'x mut [T]),
        buffers: &mut [ThreadBuffers],
    ) where
        for<'o> &'o mut [T]: Into<Output<'o>>,
    {
        // Lengths to cut whole images by; neither is 0 in a network the macro made.
        let in_len = in_len.max(1);
        let n = input.len() / in_len;
        let out_len = (output.len() / n.max(1)).max(1);
        let (threads, images) = (buffers.len().min(n).max(1), self.images(n, buffers.len()));
        // The chunks' images and outputs, cut off one after another.
        let pieces = chunk_sizes(n, images, threads).scan((input, output), |(input, output), size| {
            let (chunk_in, rest_in) = input.split_at(size * in_len);
            let (chunk_out, rest_out) = std::mem::take(output).split_at_mut(size * out_len);
            (*input, *output) = (rest_in, rest_out);
            Some((chunk_in, chunk_out))
        });
        let run = |(input, output): (&[f32], &mut [T]), buffers: &mut ThreadBuffers| {
            let (n, len) = (input.len() / in_len, input.len());
            Pass {
                steps: self.steps,
                kernels: self.kernels,
                prepared: self.prepared,
                n,
                input,
                buffers,
                output: output.into(),
                at: At::Input,
                len,
                destination: Destination::Whole,
            }
            .run();
        };
        if threads == 1 {
            return pieces.for_each(|piece| run(piece, &mut buffers[0]));
        }
        let pieces = Mutex::new(pieces);
        let next = || pieces.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).next();
        let work = |buffers: &mut ThreadBuffers| {
            alone(|| {
                while let Some(piece) = next() {
                    run(piece, buffers);
                }
            })
        };
        let (first, others) = buffers[..threads].split_first_mut().expect("threads is at least 1");
        rayon::in_place_scope(|scope| {
            for buffers in others {
                scope.spawn(|_| work(buffers));
            }
            work(first);
        });
    }
}

/// The images of each chunk of a batch of `n` on `threads` threads, in
/// order: `images` each, and the last round of chunks (one a thread) cut
/// in two, so that the threads, each taking the next chunk whenever it is
/// free, finish within half a chunk of each other rather than a whole one.
/// (Cut further, the chunks cost more than the threads wait: W1's, W4's.)
fn chunk_sizes(n: usize, images: usize, threads: usize) -> impl Iterator<Item = usize> {
    let mut left = n;
    std::iter::from_fn(move || {
        let last_round = threads > 1 && left <= threads * images;
        let size = if last_round { images.div_ceil(2) } else { images }.max(1).min(left);
        left -= size;
        (size > 0).then_some(size)
    })
}

/// The values of the largest output of `nodes` and the nodes inside them.
fn largest(nodes: &[Node]) -> usize {
    let inner = |node: &Node| node.branches().map(largest).max().unwrap_or(0);
    nodes.iter().map(|node| node.info.output.len().max(inner(node))).max().unwrap_or(0)
}

/// What each layer of a pass reads in every chunk, depth first, made once a
/// pass from its parameters: weights changed by hand are always used.
#[derive(Default)]
pub(crate) struct Prepared {
    /// A conv's or dense layer's epilogue, with the batchnorm and activation
    /// after it; a batchnorm's own; none for the rest.
    epilogues: Vec<Epilogue>,
    /// A conv's weights laid out for the pass's kernels.
    weights: Vec<LaidOut>,
}

/// Each node's epilogue and laid-out weights into `prepared`.
fn prepare(steps: Steps<'_>, kernels: Kernels, prepared: &mut Prepared) {
    if steps.first == 0 {
        let all = steps.nodes.iter().map(Node::size).sum();
        prepared.epilogues.resize_with(all, Epilogue::default);
        prepared.weights.resize_with(all, LaidOut::default);
    }
    let mut flat = steps.first;
    for (i, step) in steps.iter().enumerate() {
        let (bn, act, _) = fusable(steps, i);
        let epilogue = &mut prepared.epilogues[flat];
        match step.layer {
            Some(Layer::Conv2d(conv)) => {
                epilogue.set(conv.bias_values(), bn, act);
                conv.lay_out(kernels, &mut prepared.weights[flat]);
            }
            Some(Layer::Dense(dense)) => epilogue.set(dense.bias_values(), bn, act),
            Some(Layer::BatchNorm(bn)) => epilogue.set(None, Some(bn), None),
            None => {}
        }
        let mut inner = flat + 1;
        for nodes in step.node.branches() {
            prepare(Steps { nodes, layers: steps.layers, first: inner }, kernels, prepared);
            inner += nodes.iter().map(Node::size).sum::<usize>();
        }
        flat += step.node.size();
    }
}

struct Pass<'s, 'x, 'b> {
    steps: Steps<'s>,
    kernels: Kernels,
    prepared: &'s Prepared,
    n: usize,
    input: &'x [f32],
    buffers: &'b mut ThreadBuffers,
    /// Where the chunk's outputs go.
    output: Output<'x>,
    at: At,
    /// How many values the current step holds: buffers keep their largest
    /// length, so that reusing them writes no zeros.
    len: usize,
    /// Where the last layer writes: for a residual's body, its output with
    /// the shortcut added; for a concat's branch, its channels of the join.
    destination: Destination<'x>,
}

impl<'x> Pass<'_, 'x, '_> {
    fn run(mut self) {
        let kernels = self.kernels;
        let last_producer =
            self.steps.iter().enumerate().filter(|(_, s)| s.produces()).last().map(|(i, _)| i);
        let (mut i, mut flat) = (0, self.steps.first);
        while let Some(step) = self.steps.get(i) {
            let last = last_producer == Some(i);
            let (input, len) = (step.node.input, self.n * step.node.info.output.len());
            let later_producer = last_producer.is_some_and(|p| p > i);
            let mut fused = 0;
            match (step.node.op, step.layer) {
                (Op::Conv { .. }, Some(Layer::Conv2d(conv))) => {
                    fused = fusable(self.steps, i).2;
                    let prepared = (&self.prepared.epilogues[flat], Some(&self.prepared.weights[flat]));
                    // A `maxpool 2` next, run in the conv's tiles where it can be.
                    let pooled = self.steps.get(i + fused + 1).and_then(|next| match next.node.op {
                        Op::MaxPool { height, width } => Some((MaxPool2d::new(height, width), next.node)),
                        _ => None,
                    });
                    let pooled = pooled.filter(|(pool, _)| conv.pools_by_winograd(pool, prepared.0, kernels));
                    let (len, last) = match pooled {
                        Some((_, pool)) => {
                            fused += 1;
                            (self.n * pool.info.output.len(), last_producer == Some(i + fused))
                        }
                        None => (len, last),
                    };
                    let destination = self.destination_after(i + fused);
                    // Into columns of a concat's output: the whole of it.
                    let len = match destination {
                        Destination::Columns { .. } => self.output.len(),
                        _ => len,
                    };
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    let with = (pooled.as_ref().map(|(pool, _)| pool), destination);
                    let ends_pass = i + fused + 1 == self.steps.len() && matches!(with.1, Destination::Whole);
                    match &mut self.output {
                        // The pass's last step writes its fresh output tile by tile.
                        Output::Fresh(fresh) if ends_pass => {
                            let source = match self.at {
                                At::Input => self.input,
                                At::Buffer(k) => &self.buffers.activations[k][..self.len],
                                At::Output => unreachable!("nothing is produced after the last producer"),
                            };
                            conv.run_input(
                                Input::Images(source),
                                fresh,
                                &mut scratch,
                                prepared,
                                kernels,
                                with,
                            );
                            (self.at, self.len) = (At::Output, len);
                        }
                        _ => self.produce(len, last, |src, dst| {
                            conv.run_input(Input::Images(src), dst, &mut scratch, prepared, kernels, with)
                        }),
                    }
                    self.buffers.scratch = scratch;
                }
                (Op::Dense { .. }, Some(Layer::Dense(dense))) => {
                    fused = fusable(self.steps, i).2;
                    let destination = self.destination_after(i + fused);
                    let epilogue = &self.prepared.epilogues[flat];
                    self.produce(len, last, |src, dst| dense.run(src, dst, epilogue, kernels, destination));
                }
                (Op::MaxPool { height, width }, _) => {
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    let pool = MaxPool2d::new(height, width);
                    self.produce(len, last, |src, dst| pool.run(src, input.channels(), dst, &mut scratch));
                    self.buffers.scratch = scratch;
                }
                (Op::AvgPool { height, width }, _) => {
                    let mut scratch = std::mem::take(&mut self.buffers.scratch);
                    let pool = AvgPool2d::new(height, width);
                    self.produce(len, last, |src, dst| pool.run(src, input.channels(), dst, &mut scratch));
                    self.buffers.scratch = scratch;
                }
                (Op::GlobalAvgPool | Op::GlobalMaxPool, _) => {
                    let (c, cells) = (input.channels(), input.len() / input.channels().max(1));
                    let max = step.node.op == Op::GlobalMaxPool;
                    self.produce(len, last, |src, dst| global_pool(src, cells, c, dst, max));
                }
                (Op::Flatten | Op::Dropout(_), _) => {}
                (Op::BatchNorm { .. }, _) => {
                    let epilogue = &self.prepared.epilogues[flat];
                    epilogue.apply(self.in_place(later_producer), input.channels());
                }
                (Op::Act(act), _) => act.apply(self.in_place(later_producer), input.channels()),
                (Op::Upsample { height, width }, _) => {
                    let Shape::Hwc(h, w, c) = input else { unreachable!("upsampling is spatial") };
                    self.produce(len, last, |src, dst| upsample(src, (h, w, c), (height, width), dst));
                }
                (Op::Residual { .. } | Op::Concat { .. }, _) => {
                    let mut inner = self.buffers.inner.take().unwrap_or_default();
                    let block = Block {
                        node: step.node,
                        first: flat + 1,
                        steps: self.steps,
                        kernels,
                        prepared: self.prepared,
                        n: self.n,
                    };
                    self.produce(len, last, |src, dst| block.run(src, dst, &mut inner));
                    self.buffers.inner = Some(inner);
                }
                (Op::Conv { .. } | Op::Dense { .. }, _) => unreachable!("the plan gives these layers"),
            }
            for skipped in 0..=fused {
                flat += self.steps.get(i + skipped).map_or(1, |s| s.node.size());
            }
            i += 1 + fused;
        }
        match self.at {
            At::Output => {}
            At::Input => self.output.values().copy_from_slice(self.input),
            At::Buffer(k) => self.output.values().copy_from_slice(&self.buffers.activations[k][..self.len]),
        }
        // A body that does not end in a conv or dense layer adds its
        // shortcut here.
        match std::mem::take(&mut self.destination) {
            Destination::Whole => {}
            Destination::AddTo(residual) => {
                let shape = self.steps.nodes.last().map(|node| node.info.output);
                let channels = shape.map_or(self.output.len(), |shape| shape.channels());
                residual.apply(self.output.values(), 0, channels);
            }
            Destination::Columns { .. } => unreachable!("the block checked that the branch ends in a conv"),
        }
    }

    /// Where the layer whose fused steps end at step `last` writes: the
    /// pass's destination if that is the sequence's last step.
    fn destination_after(&mut self, last: usize) -> Destination<'x> {
        if last + 1 == self.steps.len() { std::mem::take(&mut self.destination) } else { Destination::Whole }
    }

    /// Runs `write(source, destination)` into `len` new values: the output
    /// for the last producing step, else the buffer not being read.
    fn produce(&mut self, len: usize, last: bool, write: impl FnOnce(&[f32], &mut [f32])) {
        let [first, second] = &mut self.buffers.activations;
        let (source, destination, at): (&[f32], &mut [f32], At) = match (self.at, last) {
            (At::Input, true) => (self.input, self.output.values(), At::Output),
            (At::Buffer(0), true) => (first, self.output.values(), At::Output),
            (At::Buffer(_), true) => (second, self.output.values(), At::Output),
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
                self.output.values().copy_from_slice(self.input);
                self.at = At::Output;
            }
        }
        match self.at {
            At::Buffer(k) => &mut self.buffers.activations[k][..self.len],
            _ => &mut self.output.values()[..self.len],
        }
    }
}

/// Where a pass's outputs go: values written before (a block's output),
/// or memory not written yet (the outputs [`infer`] returns, allocated
/// without zeros). A pass writes all of it.
enum Output<'x> {
    Written(&'x mut [f32]),
    /// Written by the pass's last step if that is a conv, each tile zeroed
    /// in cache just before the conv writes it; by anything else after
    /// [`Output::values`] zeroed it.
    Fresh(&'x mut [MaybeUninit<f32>]),
}

impl<'x> From<&'x mut [f32]> for Output<'x> {
    fn from(values: &'x mut [f32]) -> Output<'x> {
        Output::Written(values)
    }
}

impl<'x> From<&'x mut [MaybeUninit<f32>]> for Output<'x> {
    fn from(fresh: &'x mut [MaybeUninit<f32>]) -> Output<'x> {
        Output::Fresh(fresh)
    }
}

impl Output<'_> {
    fn len(&self) -> usize {
        match self {
            Output::Written(values) => values.len(),
            Output::Fresh(fresh) => fresh.len(),
        }
    }

    /// The values, zeroed first if fresh.
    fn values(&mut self) -> &mut [f32] {
        if let Output::Fresh(fresh) = self {
            *self = Output::Written(zeroed(std::mem::take(fresh)));
        }
        match self {
            Output::Written(values) => values,
            Output::Fresh(_) => unreachable!("written above"),
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
fn fusable<'s>(steps: Steps<'s>, i: usize) -> (Option<&'s BatchNorm>, Option<cnn_shape::Activation>, usize) {
    let mut next = steps.get(i + 1);
    let bn = next.and_then(|step| step.batchnorm());
    if bn.is_some() {
        next = steps.get(i + 2);
    }
    let act = match next.map(|step| step.node.op) {
        Some(Op::Act(act)) => Some(act),
        _ => None,
    };
    (bn, act, bn.is_some() as usize + act.is_some() as usize)
}
