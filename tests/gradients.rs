//! Every layer's gradient against central finite differences of the loss.
//!
//! An optimizer that only records the gradients reads them out of
//! `train_step`; the loss at perturbed weights comes from clones of the
//! network, so that dropout draws the same mask for every evaluation.

mod common;

use cnn::ndarray::Array4;
use cnn::optim::Optimizer;
use common::{random4, rng};
use rand::Rng;

/// Keeps the gradients a step hands to the optimizer, changes nothing.
#[derive(Default)]
struct Record(Vec<Vec<f32>>);

impl Optimizer for Record {
    fn update(&mut self, index: usize, _param: &mut [f32], grad: &[f32]) {
        self.0.resize(index + 1, Vec::new());
        self.0[index] = grad.to_vec();
    }
}

/// A no-op optimizer: evaluates the loss only.
struct Frozen;

impl Optimizer for Frozen {
    fn update(&mut self, _: usize, _: &mut [f32], _: &[f32]) {}
}

/// The parameter tensors of a network, as `train_step` hands them over.
type Params<N> = fn(&mut N) -> Vec<&mut [f32]>;

/// Compares recorded gradients with `(L(p + e) - L(p - e)) / 2e` on a sample of each tensor.
fn check<N: Clone>(net: &N, params: Params<N>, step: impl Fn(&mut N, &mut dyn Optimizer) -> f32, what: &str) {
    let mut recorded = Record::default();
    step(&mut net.clone(), &mut recorded);
    let mut r = rng(77);
    let eps = 1e-3f32;
    let mut probe = net.clone();
    let tensors = params(&mut probe).len();
    assert_eq!(recorded.0.len(), tensors, "{what}: one gradient a tensor");
    for t in 0..tensors {
        let len = params(&mut probe.clone())[t].len();
        for _ in 0..12.min(len) {
            let i = r.random_range(0..len);
            let loss_at = |delta: f32| {
                let mut moved = net.clone();
                params(&mut moved)[t][i] += delta;
                step(&mut moved, &mut Frozen) as f64
            };
            let numeric = ((loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64)) as f32;
            let analytic = recorded.0[t][i];
            let tolerance = 1e-2 * numeric.abs().max(analytic.abs()) + 2e-4;
            assert!(
                (numeric - analytic).abs() <= tolerance,
                "{what}: tensor {t}[{i}]: numeric {numeric}, backprop {analytic}"
            );
        }
    }
}

/// The tensors of a conv, dense or batchnorm layer in the order
/// `train_step` hands them over: weight, then bias.
fn conv(c: &mut cnn::layers::Conv2d) -> Vec<&mut [f32]> {
    c.parameters_mut()
}

fn dense(d: &mut cnn::layers::Dense) -> Vec<&mut [f32]> {
    d.parameters_mut()
}

fn bn(b: &mut cnn::layers::BatchNorm) -> Vec<&mut [f32]> {
    b.parameters_mut()
}

cnn::cnn! {
    #[derive(Clone)]
    struct ConvPools {
        input 9x8x4;
        conv 4 -> 6 k3x2 s2x1 p1 d1 g2 tanh;
        avgpool 2 p1 ceil;
        conv 5 k2 same d2 leakyrelu 0.1;
        maxpool 2 s1 floor;
        flatten;
        dense 3;
    }

    /// Convs of one input channel, stride 1: their weight gradients are
    /// convolutions of the padded input with the output's gradient.
    #[derive(Clone)]
    struct OneChannel {
        input 7x6x1;
        conv 3 k3 p1 tanh;
        conv 1 k1 sigmoid;
        conv 2 k2 p1 nobias;
        flatten;
        dense 3;
    }

    /// Convs at stride 1 with `same` padding whose input gradients are
    /// convolutions of the output's gradient: into 12 channels, padded on
    /// one side only (an even kernel), and into 10.
    #[derive(Clone)]
    struct InputGradients {
        input 6x7x5;
        conv 12 k3 p1 tanh;
        conv 10 k2x4 same tanh;
        conv 9 k3 p1 tanh;
        flatten;
        dense 3;
    }

    #[derive(Clone)]
    struct BatchnormSoftmax {
        input 6x6x2;
        conv 4 k3 p1 nobias;
        batchnorm;
        relu;
        maxpool 3 s2 p1 ceil;
        conv 6 k1 sigmoid;
        globalavgpool;
        dense 4 softmax;
    }

    #[derive(Clone)]
    struct FlatLayers {
        input 5x4x3;
        conv 4 k2 s2 floor relu;
        globalmaxpool;
        batchnorm 1e-3;
        dropout 0.3;
        dense 7 tanh;
        flatten;
        dense 3 nobias;
    }

    /// Activations that a training step applies as the layer before
    /// (conv, dense, batchnorm) writes its output, their gradients then
    /// taken from that output.
    #[derive(Clone)]
    struct Fused {
        input 6x5x2;
        conv 4 k3 p1 tanh;
        conv 5 k2 relu6;
        conv 3 k2 leakyrelu 0.2;
        batchnorm; tanh;
        flatten;
        dense 6 relu;
        batchnorm; sigmoid;
        dense 5 sigmoid;
        dense 3;
    }

    #[derive(Clone)]
    struct DenseOnly {
        input 3x3x2;
        flatten;
        batchnorm;
        dense 5 sigmoid;
        leakyrelu;
        dense 4;
        softmax;
    }
}

cnn::cnn! {
    #[derive(Clone)]
    struct Residuals {
        input 6x6x3;
        conv 4 k3 p1 tanh;
        residual { conv 4 k3 p1; batchnorm; silu; conv 4 k3 p1 } tanh;
        residual { conv 6 k3 s2 p1 floor } shortcut { conv 6 k1 s2 floor; batchnorm } silu;
        globalavgpool;
        dense 3;
    }

    #[derive(Clone)]
    struct Concats {
        input 4x4x2;
        concat { conv 3 k1 tanh } { upsample 2; avgpool 2 } {} silu;
        upsample 2x1;
        conv 4 k3 p1 tanh;
        flatten;
        dense 3;
    }
}

/// Small weights keep activations away from saturation and kinks.
fn batch<const N: usize>(shape: (usize, usize, usize, usize)) -> (Array4<f32>, Vec<usize>) {
    let mut r = rng(5);
    (random4(&mut r, shape), (0..shape.0).map(|i| (i * 7 + 1) % N).collect())
}

#[test]
fn conv_groups_dilation_pools_and_dense_gradients() {
    let (x, labels) = batch::<3>((3, 9, 8, 4));
    let net = ConvPools::with_seed(1);
    check(
        &net,
        |n| [conv(&mut n.conv1), conv(&mut n.conv2), dense(&mut n.dense1)].into_iter().flatten().collect(),
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "conv, pools, dense",
    );
}

#[test]
fn a_batch_split_into_parts_has_the_gradients_and_loss_of_the_whole() {
    // 70 images: parts of 32, 32 and 6, each forward and backward alone,
    // their gradients added; the loss is still the batch's mean.
    // Each tensor's gradient is the parts' own, each of a batch of its
    // images alone (checked against finite differences above), weighted
    // by the part's share of the batch.
    let (x, labels) = batch::<3>((70, 9, 8, 4));
    let net = ConvPools::with_seed(3);
    let gradients = |images: std::ops::Range<usize>| {
        let mut recorded = Record::default();
        let x = x.slice(cnn::ndarray::s![images.clone(), .., .., ..]);
        net.clone().train_step(x, &labels[images], &mut recorded).unwrap();
        recorded.0
    };
    let whole = gradients(0..70);
    let parts = [0..32, 32..64, 64..70].map(|images| (images.len() as f32 / 70.0, gradients(images)));
    for (t, tensor) in whole.iter().enumerate() {
        for (i, &got) in tensor.iter().enumerate() {
            let want: f32 = parts.iter().map(|(share, part)| share * part[t][i]).sum();
            assert!((got - want).abs() <= 1e-5 * want.abs() + 1e-7, "tensor {t}[{i}]: {got} vs {want}");
        }
    }
    // The mean cross-entropy of the inference pass's logits, in f64.
    let logits = net.forward(x.view()).unwrap();
    let mean = logits
        .rows()
        .into_iter()
        .zip(&labels)
        .map(|(row, &label)| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            sum.ln() - (row[label] as f64 - max)
        })
        .sum::<f64>()
        / labels.len() as f64;
    let loss = net.clone().train_step(x.view(), &labels, &mut Frozen).unwrap() as f64;
    assert!((loss - mean).abs() <= 1e-5 * mean.abs(), "loss {loss}, mean cross-entropy {mean}");
}

/// The parameters of a net of three convs and a dense layer, in order.
macro_rules! three_convs_and_dense {
    () => {
        |n| {
            [conv(&mut n.conv1), conv(&mut n.conv2), conv(&mut n.conv3), dense(&mut n.dense1)]
                .into_iter()
                .flatten()
                .collect()
        }
    };
}

#[test]
fn one_input_channel_gradients() {
    // Five images: a part of four and one of one.
    let (x, labels) = batch::<3>((5, 7, 6, 1));
    let net = OneChannel::with_seed(6);
    check(
        &net,
        three_convs_and_dense!(),
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "one input channel",
    );
}

#[test]
fn input_gradients_as_convolutions() {
    let (x, labels) = batch::<3>((5, 6, 7, 5));
    let net = InputGradients::with_seed(4);
    check(
        &net,
        three_convs_and_dense!(),
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "input gradients",
    );
}

#[test]
fn batchnorm_maxpool_global_pool_and_softmax_gradients() {
    let (x, labels) = batch::<4>((5, 6, 6, 2));
    let net = BatchnormSoftmax::with_seed(2);
    check(
        &net,
        |n| {
            [conv(&mut n.conv1), bn(&mut n.bn1), conv(&mut n.conv2), dense(&mut n.dense1)]
                .into_iter()
                .flatten()
                .collect()
        },
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "batchnorm, maxpool, softmax",
    );
}

#[test]
fn global_max_pool_flat_batchnorm_and_dropout_gradients() {
    let (x, labels) = batch::<3>((6, 5, 4, 3));
    let net = FlatLayers::with_seed(3);
    check(
        &net,
        |n| {
            [conv(&mut n.conv1), bn(&mut n.bn1), dense(&mut n.dense1), dense(&mut n.dense2)]
                .into_iter()
                .flatten()
                .collect()
        },
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "global max pool, flat batchnorm, dropout",
    );
}

#[test]
fn activations_fused_into_the_layer_before_gradients() {
    let (x, labels) = batch::<3>((5, 6, 5, 2));
    let net = Fused::with_seed(8);
    check(
        &net,
        |n| {
            [conv(&mut n.conv1), conv(&mut n.conv2), conv(&mut n.conv3), bn(&mut n.bn1)]
                .into_iter()
                .chain([dense(&mut n.dense1), bn(&mut n.bn2), dense(&mut n.dense2), dense(&mut n.dense3)])
                .flatten()
                .collect()
        },
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "fused activations",
    );
}

#[test]
fn dense_activations_and_flat_batchnorm_gradients() {
    let (x, labels) = batch::<4>((4, 3, 3, 2));
    let net = DenseOnly::with_seed(4);
    check(
        &net,
        |n| [bn(&mut n.bn1), dense(&mut n.dense1), dense(&mut n.dense2)].into_iter().flatten().collect(),
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "dense, activations, flat batchnorm",
    );
}

#[test]
fn residual_gradients_go_to_body_and_shortcut() {
    let (x, labels) = batch::<3>((4, 6, 6, 3));
    let net = Residuals::with_seed(5);
    check(
        &net,
        |n| {
            [
                conv(&mut n.conv1),
                conv(&mut n.residual1_0),
                bn(&mut n.residual1_1),
                conv(&mut n.residual1_3),
                conv(&mut n.residual2_0),
                conv(&mut n.residual2_shortcut_0),
                bn(&mut n.residual2_shortcut_1),
                dense(&mut n.dense1),
            ]
            .into_iter()
            .flatten()
            .collect()
        },
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "residual with and without a projection",
    );
}

#[test]
fn concat_and_upsample_gradients() {
    let (x, labels) = batch::<3>((3, 4, 4, 2));
    let net = Concats::with_seed(6);
    check(
        &net,
        |n| {
            [conv(&mut n.concat1_0_0), conv(&mut n.conv1), dense(&mut n.dense1)]
                .into_iter()
                .flatten()
                .collect()
        },
        |n, opt| n.train_step(x.view(), &labels, opt).unwrap(),
        "concat, upsample",
    );
}
