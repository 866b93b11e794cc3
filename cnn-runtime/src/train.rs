//! One step of mini-batch training: a forward pass that keeps every
//! layer's output, the mean cross-entropy and its gradient, a backward pass
//! through the same kernels, and the optimizer's update.
//!
//! Batchnorm uses the batch's statistics and updates its running ones;
//! dropout zeroes with probability `p` and scales the rest by `1/(1-p)`,
//! drawing from the network's own seeded generator. Every reduction runs in
//! a fixed order, so a seed gives bit-identical losses whatever the thread
//! count.

use ndarray::{ArrayView2, ArrayView4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::layers::{
    Activation, AvgPool2d, BatchNorm, BatchStats, Conv2d, Dense, Epilogue, MaxPool2d, global_pool,
    global_pool_backward,
};
use crate::optim::Optimizer;
use crate::{Error, Shape};

/// One layer of a training step, as the generated code lists them.
#[derive(Debug)]
pub enum TrainStep<'a> {
    Conv(&'a mut Conv2d),
    Dense(&'a mut Dense),
    BatchNorm(&'a mut BatchNorm),
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    GlobalAvgPool,
    GlobalMaxPool,
    Flatten,
    Dropout(f32),
    Act(Activation),
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

/// What the forward pass keeps for the backward pass of one step.
enum Kept {
    Nothing,
    Stats(BatchStats),
    Mask(Vec<f32>),
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
pub fn train_step<O: Optimizer + ?Sized>(
    steps: &mut [TrainStep<'_>],
    x: ArrayView4<'_, f32>,
    labels: &[usize],
    opt: &mut O,
    rng: &mut DropoutRng,
) -> Result<f32, Error> {
    let (n, h, w, c) = x.dim();
    let fused_softmax = matches!(steps.last(), Some(TrainStep::Act(Activation::Softmax)));
    let forward_len = steps.len() - fused_softmax as usize;
    let output = output_shape(&steps[..forward_len], Shape::Hwc(h, w, c));
    let Shape::Flat(classes) = output else { return Err(Error::OutputNotFlat { output }) };
    check_labels(labels, n, classes)?;

    // Forward, keeping every output: outputs[i] is step i's input.
    let mut outputs = vec![x.as_standard_layout().iter().copied().collect::<Vec<f32>>()];
    let mut shapes = vec![Shape::Hwc(h, w, c)];
    let mut kept = Vec::with_capacity(forward_len);
    for step in steps[..forward_len].iter_mut() {
        let (input, shape) =
            (outputs.last().expect("the input is first"), *shapes.last().expect("the input is first"));
        let (output, shape, keep) = forward(step, input, shape, n, rng);
        outputs.push(output);
        shapes.push(shape);
        kept.push(keep);
    }

    // The loss and its gradient with respect to the logits.
    let logits = outputs.last().expect("the logits are last");
    let (loss, mut grad) =
        cross_entropy(ArrayView2::from_shape((n, classes), logits).expect("n rows of classes"), labels);

    // Backward, then the update of every parameter tensor in order.
    let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::new(); forward_len];
    for i in (0..forward_len).rev() {
        let (input, output, shape) = (&outputs[i], &outputs[i + 1], shapes[i]);
        grad = backward(&steps[i], &kept[i], input, output, shape, grad, i > 0, &mut grads[i]);
    }
    opt.begin_step();
    let mut index = 0;
    for (step, grads) in steps.iter_mut().zip(&grads) {
        for (param, grad) in parameters(step).into_iter().zip(grads) {
            opt.update(index, param, grad);
            index += 1;
        }
    }
    Ok(loss)
}

/// The shape after `steps`.
fn output_shape(steps: &[TrainStep<'_>], mut shape: Shape) -> Shape {
    for step in steps {
        shape = match step {
            TrainStep::Conv(conv) => {
                let g = conv.geometry();
                Shape::Hwc(g.height.output, g.width.output, g.out_channels)
            }
            TrainStep::Dense(dense) => Shape::Flat(dense.weight.dim().1),
            TrainStep::MaxPool(MaxPool2d { height, width })
            | TrainStep::AvgPool(AvgPool2d { height, width }) => {
                Shape::Hwc(height.output, width.output, shape.channels())
            }
            TrainStep::GlobalAvgPool | TrainStep::GlobalMaxPool => Shape::Flat(shape.channels()),
            TrainStep::Flatten => Shape::Flat(shape.len()),
            TrainStep::BatchNorm(_) | TrainStep::Dropout(_) | TrainStep::Act(_) => shape,
        };
    }
    shape
}

/// One step of the training-mode forward pass.
fn forward(
    step: &mut TrainStep<'_>,
    input: &[f32],
    shape: Shape,
    n: usize,
    rng: &mut DropoutRng,
) -> (Vec<f32>, Shape, Kept) {
    let output_shape = output_shape(std::slice::from_ref(step), shape);
    let mut output = vec![0.0f32; n * output_shape.len()];
    let mut keep = Kept::Nothing;
    match step {
        TrainStep::Conv(conv) => {
            let epilogue = Epilogue::new(conv.bias.as_ref().and_then(|b| b.as_slice()), None, None);
            conv.run(input, &mut output, &mut Vec::new(), &epilogue);
        }
        TrainStep::Dense(dense) => {
            let epilogue = Epilogue::new(dense.bias.as_ref().and_then(|b| b.as_slice()), None, None);
            dense.run(input, &mut output, &epilogue);
        }
        TrainStep::BatchNorm(bn) => {
            output.copy_from_slice(input);
            keep = Kept::Stats(bn.train_forward(&mut output));
        }
        TrainStep::MaxPool(pool) => pool.run(input, shape.channels(), &mut output, &mut Vec::new()),
        TrainStep::AvgPool(pool) => pool.run(input, shape.channels(), &mut output, &mut Vec::new()),
        TrainStep::GlobalAvgPool | TrainStep::GlobalMaxPool => {
            let max = matches!(step, TrainStep::GlobalMaxPool);
            global_pool(input, shape.len() / shape.channels().max(1), shape.channels(), &mut output, max);
        }
        TrainStep::Flatten => output.copy_from_slice(input),
        TrainStep::Dropout(p) => {
            let (p, scale) = (*p, 1.0 / (1.0 - *p));
            let mask: Vec<f32> =
                (0..input.len()).map(|_| if rng.0.random::<f32>() < p { 0.0 } else { scale }).collect();
            output.iter_mut().zip(input).zip(&mask).for_each(|((o, x), m)| *o = x * m);
            keep = Kept::Mask(mask);
        }
        TrainStep::Act(act) => {
            output.copy_from_slice(input);
            act.apply(&mut output, shape.channels());
        }
    }
    (output, output_shape, keep)
}

/// The mean cross-entropy of `logits` and the gradient `(softmax - onehot) / N`.
fn cross_entropy(logits: ArrayView2<'_, f32>, labels: &[usize]) -> (f32, Vec<f32>) {
    let n = logits.nrows();
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
    ((loss / n.max(1) as f64) as f32, grad)
}

/// One step of the backward pass: the gradient of the step's input (left
/// empty for the first step, `want_input`), its parameters' into `grads`.
#[allow(clippy::too_many_arguments)]
fn backward(
    step: &TrainStep<'_>,
    kept: &Kept,
    input: &[f32],
    output: &[f32],
    shape: Shape,
    mut grad: Vec<f32>,
    want_input: bool,
    grads: &mut Vec<Vec<f32>>,
) -> Vec<f32> {
    let c = shape.channels();
    match step {
        TrainStep::Conv(conv) => {
            let biases = conv.bias.as_ref().map(|b| b.len());
            weighted(input.len(), conv.weight.len(), biases, want_input, grads, |dx, dw, db| {
                conv.backward(input, &grad, dx, dw, db)
            })
        }
        TrainStep::Dense(dense) => {
            let biases = dense.bias.as_ref().map(|b| b.len());
            weighted(input.len(), dense.weight.len(), biases, want_input, grads, |dx, dw, db| {
                dense.backward(input, &grad, dx, dw, db)
            })
        }
        TrainStep::BatchNorm(bn) => {
            let Kept::Stats(stats) = kept else { unreachable!("batchnorm keeps its statistics") };
            let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
            bn.backward(stats, &mut grad, &mut dgamma, &mut dbeta);
            grads.extend([dgamma, dbeta]);
            grad
        }
        TrainStep::MaxPool(pool) => {
            let mut dx = vec![0.0f32; input.len()];
            pool.backward(input, c, &grad, &mut dx);
            dx
        }
        TrainStep::AvgPool(pool) => {
            let mut dx = vec![0.0f32; input.len()];
            pool.backward(c, &grad, &mut dx);
            dx
        }
        TrainStep::GlobalAvgPool | TrainStep::GlobalMaxPool => {
            let mut dx = vec![0.0f32; input.len()];
            let max = matches!(step, TrainStep::GlobalMaxPool);
            global_pool_backward(input, shape.len() / c.max(1), c, &grad, &mut dx, max);
            dx
        }
        TrainStep::Flatten => grad,
        TrainStep::Dropout(_) => {
            let Kept::Mask(mask) = kept else { unreachable!("dropout keeps its mask") };
            grad.iter_mut().zip(mask).for_each(|(g, m)| *g *= m);
            grad
        }
        TrainStep::Act(act) => {
            act.backward(input, output, &mut grad, c);
            grad
        }
    }
}

/// Runs the backward pass of a layer with a weight and maybe a bias: its
/// gradients go to `grads` (weight, then bias), the input's is returned
/// (empty unless `want_input`).
fn weighted(
    input_len: usize,
    weights: usize,
    biases: Option<usize>,
    want_input: bool,
    grads: &mut Vec<Vec<f32>>,
    backward: impl FnOnce(Option<&mut [f32]>, &mut [f32], Option<&mut [f32]>),
) -> Vec<f32> {
    let mut dx = vec![0.0f32; if want_input { input_len } else { 0 }];
    let (mut dw, mut db) = (vec![0.0f32; weights], vec![0.0f32; biases.unwrap_or(0)]);
    backward(want_input.then_some(&mut dx[..]), &mut dw, biases.map(|_| &mut db[..]));
    grads.push(dw);
    if biases.is_some() {
        grads.push(db);
    }
    dx
}

/// The parameter tensors of a step, in the order their gradients come.
fn parameters<'a>(step: &'a mut TrainStep<'_>) -> Vec<&'a mut [f32]> {
    fn contiguous<D: ndarray::Dimension>(a: &mut ndarray::Array<f32, D>) -> &mut [f32] {
        if !a.is_standard_layout() {
            *a = a.as_standard_layout().into_owned();
        }
        a.as_slice_mut().expect("standard layout is contiguous")
    }
    match step {
        TrainStep::Conv(conv) => {
            let Conv2d { weight, bias, .. } = &mut **conv;
            std::iter::once(contiguous(weight)).chain(bias.as_mut().map(contiguous)).collect()
        }
        TrainStep::Dense(dense) => {
            let Dense { weight, bias } = &mut **dense;
            std::iter::once(contiguous(weight)).chain(bias.as_mut().map(contiguous)).collect()
        }
        TrainStep::BatchNorm(bn) => {
            let BatchNorm { weight, bias, .. } = &mut **bn;
            vec![contiguous(weight), contiguous(bias)]
        }
        _ => Vec::new(),
    }
}

/// The fraction of rows of `scores` whose largest value is at the label.
pub fn accuracy(scores: ArrayView2<'_, f32>, labels: &[usize]) -> Result<f32, Error> {
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
