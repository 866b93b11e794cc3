//! One step of mini-batch training: a forward pass that keeps every
//! layer's output, the mean cross-entropy and its gradient, a backward pass
//! through the same kernels, and the optimizer's update.
//!
//! Batchnorm uses the batch's statistics and updates its running ones;
//! dropout zeroes with probability `p` and scales the rest by `1/(1-p)`,
//! drawing from the network's own seeded generator. Every reduction runs in
//! a fixed order, so a seed gives bit-identical losses whatever the thread
//! count. A batch of a network without either is taken in parts of a fixed
//! number of images, each forward and backward on one thread, so that the
//! threads share a step without waiting for each other at every layer.

use cnn_shape::{Activation, Node, Op, Plan, Shape};
use ndarray::{ArrayView2, ArrayView4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::Error;
use crate::cpu::{self, Kernels};
use crate::layers::{
    Apply, AvgPool2d, BatchNorm, BatchStats, Conv2d, Dense, Destination, Epilogue, Input, MaxPool2d,
    global_pool, global_pool_backward, upsample, upsample_backward,
};
use crate::optim::Optimizer;
use crate::workspace::{alone, give_back, in_parts, overwritten, with_kept_scratch};

/// A network's layer with parameters, as a training step changes it: the
/// plan's nodes name them by their slot.
#[derive(Debug)]
pub enum LayerMut<'a> {
    Conv2d(&'a mut Conv2d),
    Dense(&'a mut Dense),
    BatchNorm(&'a mut BatchNorm),
}

impl LayerMut<'_> {
    /// Its trainable tensors, in the order their gradients come.
    fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        match self {
            LayerMut::Conv2d(conv) => conv.parameters_mut(),
            LayerMut::Dense(dense) => dense.parameters_mut(),
            LayerMut::BatchNorm(bn) => bn.parameters_mut(),
        }
    }
}

/// The layers as a forward pass reads them: a batchnorm updates its
/// running statistics, so a whole batch takes them mutably; the parts of a
/// split batch, which has none, share them.
enum Layers<'s, 'a> {
    Whole(&'s mut [LayerMut<'a>]),
    Shared(&'s [LayerMut<'a>]),
}

impl<'a> Layers<'_, 'a> {
    fn all(&self) -> &[LayerMut<'a>] {
        match self {
            Layers::Whole(layers) => layers,
            Layers::Shared(layers) => layers,
        }
    }

    fn get_mut(&mut self, slot: usize) -> &mut LayerMut<'a> {
        match self {
            Layers::Whole(layers) => &mut layers[slot],
            Layers::Shared(_) => unreachable!("a split batch has no batchnorm"),
        }
    }
}

/// The images of each part when a batch is split: each part runs forward
/// and backward by itself, on one thread, and the parts' gradients are
/// added in order. A number of images, not of threads, so that the result
/// does not depend on the thread count.
const PART_IMAGES: usize = 32;

/// Whether a batch through `nodes` may be split into parts: none of its
/// nodes is a batchnorm, whose statistics are the whole batch's, or a
/// dropout, whose masks are drawn in the batch's order.
fn splits(nodes: &[Node]) -> bool {
    let splits_node = |node: &Node| !matches!(node.op, Op::BatchNorm { .. } | Op::Dropout(_));
    nodes.iter().all(|node| splits_node(node) && node.branches().all(splits))
}

/// The generator a network's dropout layers draw from.
#[derive(Clone, Debug)]
pub struct DropoutRng(ChaCha8Rng);

impl DropoutRng {
    pub fn new(seed: u64) -> DropoutRng {
        // Another stream than the initialisation's, from the same seed.
        DropoutRng(ChaCha8Rng::seed_from_u64(seed ^ 0x0005_eedd_80f0_u64))
    }
}

impl Default for DropoutRng {
    fn default() -> DropoutRng {
        DropoutRng::new(0)
    }
}

/// What the forward pass keeps for the backward pass of one node.
enum Kept {
    Nothing,
    Stats(BatchStats),
    Mask(Vec<f32>),
    /// A conv's input padded as its patches are read, for its weight
    /// gradient.
    Padded(Vec<f32>),
    /// A block: each branch's record (the shortcut after the body), and the
    /// merged values before the block's activation.
    Block {
        branches: Vec<Record>,
        merged: Vec<f32>,
    },
}

/// The forward pass of a sequence of nodes: `outputs[i]` is node `i`'s
/// input, the last one the sequence's output.
struct Record {
    outputs: Vec<Vec<f32>>,
    kept: Vec<Kept>,
}

impl Record {
    fn output(&self) -> &[f32] {
        self.outputs.last().expect("the input is first")
    }

    /// Its buffers, for the next step.
    fn give_back(self) {
        for kept in self.kept {
            match kept {
                Kept::Mask(values) | Kept::Padded(values) => give_back([values]),
                Kept::Block { branches, merged } => {
                    give_back([merged]);
                    branches.into_iter().for_each(Record::give_back);
                }
                Kept::Stats(stats) => give_back([stats.into_buffer()]),
                Kept::Nothing => {}
            }
        }
        give_back(self.outputs);
    }
}

/// Runs `nodes` in training mode on `input`, keeping what backward needs.
fn forward_all(
    nodes: &[Node],
    layers: &mut Layers<'_, '_>,
    input: Vec<f32>,
    n: usize,
    rng: &mut DropoutRng,
) -> Record {
    let mut record = Record { outputs: vec![input], kept: Vec::with_capacity(nodes.len()) };
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 && fused(&nodes[i - 1], node).is_some() {
            // The layer before wrote this activation's output: its own,
            // the activation's input, is not kept.
            let output = std::mem::take(record.outputs.last_mut().expect("the input is first"));
            record.outputs.push(output);
            record.kept.push(Kept::Nothing);
            continue;
        }
        let act = nodes.get(i + 1).and_then(|next| fused(node, next));
        let (output, keep) = forward(node, layers, record.output(), n, rng, act);
        record.outputs.push(output);
        record.kept.push(keep);
    }
    record
}

/// The activation of `next` if `node` applies it as it writes its output
/// (a conv or dense layer, in its epilogue; a batchnorm, a part of its
/// output at a time): one whose gradient is the same computed from its
/// output as from its input, which is then not kept (relu and relu6 by the
/// sign and range of either, leaky relu with a slope of 0 or more too; tanh
/// and sigmoid by their output alone). None of these layers' gradients
/// needs its own output.
fn fused(node: &Node, next: &Node) -> Option<Activation> {
    let Op::Act(act) = next.op else { return None };
    let from_output = match act {
        Activation::Relu | Activation::Relu6 | Activation::Tanh | Activation::Sigmoid => true,
        Activation::LeakyRelu(alpha) => alpha >= 0.0,
        Activation::Silu | Activation::Softmax => false,
    };
    let applies_it = matches!(node.op, Op::Conv { .. } | Op::Dense { .. } | Op::BatchNorm { .. });
    (applies_it && from_output).then_some(act)
}

/// The gradient of the input of `nodes` from `grad`, its output's; the
/// parameters' gradients into `grads`, by slot. The first node's input
/// gradient is left empty unless `want_input`.
fn backward_all(
    nodes: &[Node],
    layers: &[LayerMut<'_>],
    record: &Record,
    mut grad: Vec<f32>,
    want_input: bool,
    grads: &mut [Vec<Vec<f32>>],
) -> Vec<f32> {
    for (i, node) in nodes.iter().enumerate().rev() {
        let (input, output) = (&record.outputs[i], &record.outputs[i + 1]);
        grad = backward(node, layers, &record.kept[i], input, output, grad, want_input || i > 0, grads);
    }
    grad
}

/// Checks the labels against the batch and the number of classes.
fn check_labels(labels: &[usize], batch: usize, classes: usize) -> Result<(), Error> {
    if labels.len() != batch {
        return Err(Error::LabelCount { labels: labels.len(), batch });
    }
    match labels.iter().position(|&l| l >= classes) {
        Some(index) => Err(Error::LabelOutOfRange { index, label: labels[index], classes }),
        None => Ok(()),
    }
}

/// One step of gradient descent on the mean cross-entropy; returns that
/// mean loss. A final softmax is taken with the loss (gradient `p - y`);
/// without one the output is treated as logits.
pub(crate) fn train_step<O: Optimizer + ?Sized>(
    plan: &Plan,
    layers: &mut [LayerMut<'_>],
    x: ArrayView4<'_, f32>,
    labels: &[usize],
    opt: &mut O,
    rng: &mut DropoutRng,
) -> Result<f32, Error> {
    crate::check_input(&x, plan.input)?;
    let n = x.dim().0;
    let fused_softmax = matches!(plan.nodes.last(), Some(Node { op: Op::Act(Activation::Softmax), .. }));
    let nodes = &plan.nodes[..plan.nodes.len() - fused_softmax as usize];
    let output = nodes.last().map_or(plan.input, |node| node.info.output);
    let Shape::Flat(classes) = output else { return Err(Error::OutputNotFlat { output }) };
    check_labels(labels, n, classes)?;

    let x = x.as_standard_layout();
    let input = x.as_slice().expect("standard layout is contiguous");
    let (loss, grads) = if n > PART_IMAGES && splits(nodes) {
        // The parts on rayon's threads, each alone on its own, then their
        // losses and gradients added in order.
        let layers = &*layers;
        let parts: Vec<_> = input
            .par_chunks(PART_IMAGES * plan.input.len())
            .zip(labels.par_chunks(PART_IMAGES))
            .map(|(images, labels)| {
                // No dropout here, so nothing draws from the generator.
                let mut rng = DropoutRng::default();
                alone(|| step(nodes, &mut Layers::Shared(layers), images, (labels, n), &mut rng))
            })
            .collect();
        let mut parts = parts.into_iter();
        let (mut loss, mut grads) = parts.next().expect("a batch of more than PART_IMAGES");
        for (part_loss, part_grads) in parts {
            loss += part_loss;
            for (sum, part) in grads.iter_mut().flatten().zip(part_grads.iter().flatten()) {
                sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
            }
        }
        (loss, grads)
    } else {
        // On one of rayon's threads, so that the layers' parallel loops run
        // there too rather than each being handed over from this thread: on
        // one thread, the step's values then stay in one core's cache.
        rayon::scope(|_| step(nodes, &mut Layers::Whole(layers), input, (labels, n), rng))
    };
    let loss = (loss / n.max(1) as f64) as f32;

    // The update of every parameter tensor, slot by slot.
    opt.begin_step();
    let mut index = 0;
    for (layer, grads) in layers.iter_mut().zip(&grads) {
        for (tensor, grad) in layer.parameters_mut().into_iter().zip(grads) {
            opt.update(index, tensor, grad);
            index += 1;
        }
    }
    Ok(loss)
}

/// Forward and backward through `nodes` for the images `input` and their
/// `labels`, of a batch of `batch` images: the sum of their losses, and
/// every parameter's gradient by slot, of the batch's mean loss.
fn step(
    nodes: &[Node],
    layers: &mut Layers<'_, '_>,
    input: &[f32],
    (labels, batch): (&[usize], usize),
    rng: &mut DropoutRng,
) -> (f64, Vec<Vec<Vec<f32>>>) {
    // Forward, keeping every output.
    let n = labels.len();
    let record = forward_all(nodes, layers, copied(input), n, rng);

    // The loss and its gradient with respect to the logits.
    let classes = record.output().len() / n.max(1);
    let logits = ArrayView2::from_shape((n, classes), record.output()).expect("n rows of classes");
    let (loss, grad) = cross_entropy(logits, labels, batch);

    // Backward, every parameter's gradient by slot.
    let layers = layers.all();
    let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::new(); layers.len()];
    give_back([backward_all(nodes, layers, &record, grad, false, &mut grads)]);
    record.give_back();
    (loss, grads)
}

/// One node of the training-mode forward pass; a conv or dense layer
/// applies `act` too.
fn forward(
    node: &Node,
    layers: &mut Layers<'_, '_>,
    input: &[f32],
    n: usize,
    rng: &mut DropoutRng,
    act: Option<Activation>,
) -> (Vec<f32>, Kept) {
    let shape = node.input;
    // Steps that change their input start from a copy of it; the rest
    // write every value of their output.
    let mut output = match node.op {
        Op::Flatten | Op::Act(_) => copied(input),
        _ => overwritten(n * node.info.output.len()),
    };
    let mut keep = Kept::Nothing;
    let layer = node.param.map(|p| p.slot);
    if let (Op::BatchNorm { .. }, Some(slot)) = (node.op, layer) {
        let LayerMut::BatchNorm(bn) = layers.get_mut(slot) else {
            unreachable!("the plan gives a batchnorm")
        };
        let stats = bn.train_forward(input, (&mut output, act), overwritten(input.len()));
        return (output, Kept::Stats(stats));
    }
    match (node.op, layer.map(|slot| &layers.all()[slot])) {
        (Op::Conv { .. }, Some(LayerMut::Conv2d(conv))) => {
            let epilogue = Epilogue::new(conv.bias_values(), None, act);
            let padded = conv.pad_input(input, Kernels::Fastest);
            let input = padded.as_deref().map_or(Input::Images(input), Input::Padded);
            let (prepared, whole) = ((&epilogue, None), Destination::Whole);
            with_kept_scratch(|scratch| {
                conv.run_input(input, &mut output, scratch, prepared, Kernels::Fastest, (None, whole))
            });
            keep = padded.map_or(Kept::Nothing, Kept::Padded);
        }
        (Op::Dense { .. }, Some(LayerMut::Dense(dense))) => {
            let epilogue = Epilogue::new(dense.bias_values(), None, act);
            dense.run(input, &mut output, &epilogue, Kernels::Fastest, Destination::Whole);
        }
        (Op::MaxPool { height, width }, _) => {
            let pool = MaxPool2d::new(height, width);
            with_kept_scratch(|scratch| pool.run(input, shape.channels(), &mut output, scratch))
        }
        (Op::AvgPool { height, width }, _) => {
            let pool = AvgPool2d::new(height, width);
            with_kept_scratch(|scratch| pool.run(input, shape.channels(), &mut output, scratch))
        }
        (Op::GlobalAvgPool | Op::GlobalMaxPool, _) => {
            let max = node.op == Op::GlobalMaxPool;
            global_pool(input, shape.len() / shape.channels().max(1), shape.channels(), &mut output, max);
        }
        (Op::Flatten, _) => {}
        (Op::Dropout(p), _) => {
            let scale = 1.0 / (1.0 - p);
            let mask: Vec<f32> =
                (0..input.len()).map(|_| if rng.0.random::<f32>() < p { 0.0 } else { scale }).collect();
            output.iter_mut().zip(input).zip(&mask).for_each(|((o, x), m)| *o = x * m);
            keep = Kept::Mask(mask);
        }
        (Op::Act(act), _) => apply(act, &mut output, shape.channels()),
        (Op::Upsample { height, width }, _) => {
            let Shape::Hwc(h, w, c) = shape else { unreachable!("upsampling is spatial") };
            upsample(input, (h, w, c), (height, width), &mut output);
        }
        (Op::Residual { body, shortcut, act }, _) => {
            let mut branches = vec![forward_all(body, layers, copied(input), n, rng)];
            branches.extend(shortcut.map(|nodes| forward_all(nodes, layers, copied(input), n, rng)));
            let (body, shortcut) = (branches[0].output(), branches.get(1).map_or(input, Record::output));
            in_parts(&mut output, 1, |sum, at| {
                let each = sum.iter_mut().zip(&body[at.clone()]).zip(&shortcut[at]);
                each.for_each(|((o, b), s)| *o = b + s);
            });
            keep = merged(act, &mut output, node.info.output, branches);
        }
        (Op::Concat { branches, act }, _) => {
            let records: Vec<Record> =
                branches.iter().map(|nodes| forward_all(nodes, layers, copied(input), n, rng)).collect();
            let channels = node.info.output.channels();
            let pixels = output.len() / channels.max(1);
            let mut at = 0;
            for record in &records {
                let width = record.output().len() / pixels.max(1);
                for (pixel, part) in
                    output.chunks_exact_mut(channels).zip(record.output().chunks_exact(width.max(1)))
                {
                    pixel[at..at + width].copy_from_slice(part);
                }
                at += width;
            }
            keep = merged(act, &mut output, node.info.output, records);
        }
        (Op::Conv { .. } | Op::Dense { .. } | Op::BatchNorm { .. }, _) => {
            unreachable!("the plan gives these layers")
        }
    }
    (output, keep)
}

/// A block's record: its branches, and its merged values before `act`,
/// which is applied to `output` in place.
fn merged(act: Option<Activation>, output: &mut [f32], shape: Shape, branches: Vec<Record>) -> Kept {
    let merged = copied(output);
    if let Some(act) = act {
        apply(act, output, shape.channels());
    }
    Kept::Block { branches, merged }
}

/// A copy of `values`, in a buffer of the last step's, in parts on
/// rayon's threads where there are several.
fn copied(values: &[f32]) -> Vec<f32> {
    let mut copy = overwritten(values.len());
    in_parts(&mut copy, 1, |copy, at| copy.copy_from_slice(&values[at]));
    copy
}

/// Applies `act` to `values` in place, rows of `channels`, in parts on
/// rayon's threads where there are several.
fn apply(act: Activation, values: &mut [f32], channels: usize) {
    in_parts(values, channels, |values, _| {
        cpu::vectorized(
            #[inline(always)]
            || act.apply(values, channels),
        )
    });
}

/// Turns `grad`, the gradient of `act`'s output, into its input's, from
/// either (relu's and the like's input is its output when it was fused).
fn act_backward(act: Activation, (input, output): (&[f32], &[f32]), grad: &mut [f32], channels: usize) {
    in_parts(grad, channels, |grad, at| {
        let (input, output) = (&input[at.clone()], &output[at]);
        cpu::vectorized(
            #[inline(always)]
            || act.backward(input, output, grad, channels),
        )
    });
}

/// The sum of the cross-entropies of the rows of `logits`, and the
/// gradient of the mean over a batch of `batch` rows, `(softmax - onehot) /
/// batch`.
fn cross_entropy(logits: ArrayView2<'_, f32>, labels: &[usize], batch: usize) -> (f64, Vec<f32>) {
    let n = batch;
    let mut grad = Vec::with_capacity(logits.len());
    let mut loss = 0.0f64;
    for (row, &label) in logits.rows().into_iter().zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        loss += sum.ln() - (row[label] as f64 - max);
        for (k, &v) in row.iter().enumerate() {
            let p = (v as f64 - max).exp() / sum;
            grad.push(((p - (k == label) as u8 as f64) / n as f64) as f32);
        }
    }
    (loss, grad)
}

/// One node of the backward pass: the gradient of its input (left empty
/// for the first node, `want_input`), its parameters' into `grads`.
#[allow(clippy::too_many_arguments)]
fn backward(
    node: &Node,
    layers: &[LayerMut<'_>],
    kept: &Kept,
    input: &[f32],
    output: &[f32],
    mut grad: Vec<f32>,
    want_input: bool,
    grads: &mut [Vec<Vec<f32>>],
) -> Vec<f32> {
    let shape = node.input;
    let c = shape.channels();
    let slot = node.param.map_or(0, |p| p.slot);
    match (node.op, node.param.map(|p| &layers[p.slot])) {
        (Op::Conv { .. }, Some(LayerMut::Conv2d(conv))) => {
            let sizes = (input.len(), conv.weight().len(), conv.bias_values().map(<[f32]>::len));
            let padded = match kept {
                Kept::Padded(padded) => Some(&padded[..]),
                _ => None,
            };
            weighted(grad, sizes, want_input, &mut grads[slot], |dy, dx, dw, db| {
                conv.backward((input, padded), dy, dx, dw, db)
            })
        }
        (Op::Dense { .. }, Some(LayerMut::Dense(dense))) => {
            let sizes = (input.len(), dense.weight().len(), dense.bias_values().map(<[f32]>::len));
            weighted(grad, sizes, want_input, &mut grads[slot], |dy, dx, dw, db| {
                dense.backward(input, dy, dx, dw, db)
            })
        }
        (Op::BatchNorm { .. }, Some(LayerMut::BatchNorm(bn))) => {
            let Kept::Stats(stats) = kept else { unreachable!("batchnorm keeps its statistics") };
            let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
            bn.backward(stats, &mut grad, &mut dgamma, &mut dbeta);
            grads[slot].extend([dgamma, dbeta]);
            grad
        }
        (Op::MaxPool { height, width }, _) => {
            let mut dx = overwritten(input.len());
            MaxPool2d::new(height, width).backward((input, output), c, &grad, &mut dx, Kernels::Fastest);
            give_back([grad]);
            dx
        }
        (Op::AvgPool { height, width }, _) => {
            let mut dx = overwritten(input.len());
            AvgPool2d::new(height, width).backward(c, &grad, &mut dx);
            give_back([grad]);
            dx
        }
        (Op::GlobalAvgPool | Op::GlobalMaxPool, _) => {
            let mut dx = vec![0.0f32; input.len()];
            let max = node.op == Op::GlobalMaxPool;
            global_pool_backward(input, shape.len() / c.max(1), c, &grad, &mut dx, max);
            dx
        }
        (Op::Flatten, _) => grad,
        (Op::Dropout(_), _) => {
            let Kept::Mask(mask) = kept else { unreachable!("dropout keeps its mask") };
            grad.iter_mut().zip(mask).for_each(|(g, m)| *g *= m);
            grad
        }
        (Op::Act(act), _) => {
            // Fused into the layer before, its input was not kept.
            let input = if input.is_empty() { output } else { input };
            act_backward(act, (input, output), &mut grad, c);
            grad
        }
        (Op::Upsample { height, width }, _) => {
            let Shape::Hwc(h, w, c) = shape else { unreachable!("upsampling is spatial") };
            let mut dx = vec![0.0f32; input.len()];
            upsample_backward(&grad, (h, w, c), (height, width), &mut dx);
            dx
        }
        (Op::Residual { body, shortcut, act }, _) => {
            let Kept::Block { branches, merged } = kept else { unreachable!("a block keeps its branches") };
            if let Some(act) = act {
                act_backward(act, (merged, output), &mut grad, node.info.output.channels());
            }
            // The addition hands the same gradient to both paths.
            let through_shortcut = match shortcut {
                Some(nodes) => backward_all(nodes, layers, &branches[1], copied(&grad), true, grads),
                None => copied(&grad),
            };
            let mut dx = backward_all(body, layers, &branches[0], grad, true, grads);
            in_parts(&mut dx, 1, |dx, at| {
                dx.iter_mut().zip(&through_shortcut[at]).for_each(|(d, s)| *d += s)
            });
            give_back([through_shortcut]);
            dx
        }
        (Op::Concat { branches: nodes, act }, _) => {
            let Kept::Block { branches, merged } = kept else { unreachable!("a block keeps its branches") };
            let channels = node.info.output.channels();
            if let Some(act) = act {
                act_backward(act, (merged, output), &mut grad, channels);
            }
            // The join hands each branch the gradient of its channels.
            let (pixels, mut at) = (grad.len() / channels.max(1), 0);
            let mut dx = vec![0.0f32; input.len()];
            for (nodes, record) in nodes.iter().zip(branches) {
                let width = record.output().len() / pixels.max(1);
                let part: Vec<f32> = grad
                    .chunks_exact(channels)
                    .flat_map(|pixel| pixel[at..at + width].iter().copied())
                    .collect();
                let part = backward_all(nodes, layers, record, part, true, grads);
                dx.iter_mut().zip(&part).for_each(|(d, p)| *d += p);
                at += width;
            }
            dx
        }
        (Op::Conv { .. } | Op::Dense { .. } | Op::BatchNorm { .. }, _) => {
            unreachable!("the plan gives these layers")
        }
    }
}

/// Runs the backward pass of a layer with a weight and maybe a bias, of
/// `(input, weight, bias)` sizes, from `dy`, its output's gradient, which
/// goes back to the thread's spares: its gradients go to `grads` (weight,
/// then bias), the input's is returned (empty unless `want_input`).
fn weighted(
    dy: Vec<f32>,
    (input_len, weights, biases): (usize, usize, Option<usize>),
    want_input: bool,
    grads: &mut Vec<Vec<f32>>,
    backward: impl FnOnce(&[f32], Option<&mut [f32]>, &mut [f32], Option<&mut [f32]>),
) -> Vec<f32> {
    let mut dx = overwritten(if want_input { input_len } else { 0 });
    let (mut dw, mut db) = (vec![0.0f32; weights], vec![0.0f32; biases.unwrap_or(0)]);
    backward(&dy, want_input.then_some(&mut dx[..]), &mut dw, biases.map(|_| &mut db[..]));
    give_back([dy]);
    grads.push(dw);
    if biases.is_some() {
        grads.push(db);
    }
    dx
}

/// The fraction of rows of `scores` whose largest value is at the label.
pub(crate) fn accuracy(scores: ArrayView2<'_, f32>, labels: &[usize]) -> Result<f32, Error> {
    check_labels(labels, scores.nrows(), scores.ncols())?;
    let correct = scores
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            best.0 == **label
        })
        .count();
    Ok(correct as f32 / labels.len().max(1) as f32)
}
