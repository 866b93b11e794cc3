//! Training on real data, reproducibly, and its errors.

mod common;

use cnn::data::{Dataset, read_digits};
use cnn::ndarray::{Array4, s};
use cnn::optim::{Adam, Sgd};
use rand::SeedableRng;
use rand::seq::SliceRandom;

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz");

cnn::cnn! {
    #[derive(Clone)]
    struct SmallDigits {
        input 8x8x1;
        conv 8 k3 p1 relu;      // 8x8x8
        maxpool 2;              // 4x4x8
        flatten;                // 128
        dropout 0.1;
        dense 128 -> 10;
    }
}

/// A seeded 80/20 split of the digits set.
fn digits_split(seed: u64) -> (Dataset, Dataset) {
    let digits = read_digits(DIGITS).unwrap();
    let mut order: Vec<usize> = (0..digits.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let cut = digits.len() * 4 / 5;
    (digits.select(&order[..cut]), digits.select(&order[cut..]))
}

/// Trains `epochs` epochs in batches of 32; returns every step's loss.
fn train(
    net: &mut SmallDigits,
    data: &Dataset,
    epochs: usize,
    opt: &mut impl cnn::optim::Optimizer,
) -> Vec<f32> {
    let mut losses = Vec::new();
    for _ in 0..epochs {
        for start in (0..data.len()).step_by(32) {
            let end = (start + 32).min(data.len());
            let x = data.images.slice(s![start..end, .., .., ..]);
            losses.push(net.train_step(x, &data.labels[start..end], opt).unwrap());
        }
    }
    losses
}

#[test]
fn a_small_cnn_learns_the_digits() {
    let (train_set, test_set) = digits_split(1);
    let mut net = SmallDigits::with_seed(1);
    let before = net.accuracy(test_set.images.view(), &test_set.labels).unwrap();
    let losses = train(&mut net, &train_set, 3, &mut Adam::new(0.01));
    let after = net.accuracy(test_set.images.view(), &test_set.labels).unwrap();
    assert!(before < 0.3, "an untrained network guesses: {before}");
    assert!(after > 0.85, "test accuracy after 3 epochs: {after}");
    assert!(losses.last().unwrap() < &(losses[0] / 3.0), "loss {} -> {}", losses[0], losses.last().unwrap());
}

#[test]
fn sgd_with_momentum_learns_too() {
    let (train_set, test_set) = digits_split(2);
    let mut net = SmallDigits::with_seed(2);
    train(&mut net, &train_set, 3, &mut Sgd::new(0.05).momentum(0.9).weight_decay(1e-4));
    let after = net.accuracy(test_set.images.view(), &test_set.labels).unwrap();
    assert!(after > 0.85, "test accuracy after 3 epochs: {after}");
}

#[test]
fn a_seed_gives_bit_identical_losses_whatever_the_thread_count() {
    let (train_set, _) = digits_split(3);
    let run = |threads| {
        common::on_threads(threads, || {
            train(&mut SmallDigits::with_seed(7), &train_set, 1, &mut Adam::new(0.01))
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    // Another seed: other weights, other dropout masks, other losses.
    let other = train(&mut SmallDigits::with_seed(8), &train_set, 1, &mut Adam::new(0.01));
    assert_ne!(one, other);
}

#[test]
fn a_batch_in_parts_gives_bit_identical_losses_whatever_the_thread_count() {
    // No batchnorm or dropout: a batch of 70 runs in parts of 32, 32 and 6.
    cnn::cnn! {
        struct Plain { input 8x8x1; conv 4 k3 relu; maxpool 2; flatten; dense 10; }
    }
    let (train_set, _) = digits_split(4);
    let batch = train_set.select(&(0..70).collect::<Vec<_>>());
    let run = |threads| {
        common::on_threads(threads, || {
            let (mut net, mut opt) = (Plain::with_seed(3), Adam::new(0.01));
            (0..5)
                .map(|_| net.train_step(batch.images.view(), &batch.labels, &mut opt).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    assert!(one[4] < one[0], "the loss falls: {one:?}");
}

#[test]
fn batchnorm_and_blocks_give_bit_identical_losses_whatever_the_thread_count() {
    // Batchnorm needs the whole batch: its statistics and gradients are
    // summed over parts of 2^15 values (here several), in one order.
    cnn::cnn! {
        struct Blocks {
            input 8x8x1;
            conv 16 k3 p1 nobias; batchnorm; relu;
            residual { conv 16 k3 p1 nobias; batchnorm; relu; conv 16 k3 p1 nobias; batchnorm } relu;
            concat {} { maxpool 3 s1 p1; conv 8 k1 } relu6;
            globalavgpool; dense 10;
        }
    }
    let (train_set, _) = digits_split(5);
    let batch = train_set.select(&(0..300).collect::<Vec<_>>());
    let run = |threads| {
        common::on_threads(threads, || {
            let (mut net, mut opt) = (Blocks::with_seed(5), Adam::new(0.01));
            let losses: Vec<f32> = (0..4)
                .map(|_| net.train_step(batch.images.view(), &batch.labels, &mut opt).unwrap())
                .collect();
            (losses, net.residual1_1.running_var().to_vec())
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert!(one.0[3] < one.0[0], "the loss falls: {:?}", one.0);
}

#[test]
fn batchnorm_updates_running_statistics_in_training_only() {
    cnn::cnn! {
        struct Normed { input 4x4x2; conv 3 k3; batchnorm; flatten; dense 2; }
    }
    let mut net = Normed::new();
    let x = Array4::from_shape_fn((6, 4, 4, 2), |(n, y, x, c)| (n + 2 * y + 3 * x + c) as f32 / 10.0);
    let before = net.bn1.running_mean().to_owned();
    net.forward(x.view()).unwrap();
    assert_eq!(net.bn1.running_mean(), before, "inference leaves the statistics alone");
    net.train_step(x.view(), &[0, 1, 0, 1, 0, 1], &mut Sgd::new(0.0)).unwrap();
    // running = 0.9 * 0 + 0.1 * batch mean of the conv output.
    let conv = net.conv1.forward(x.view()).unwrap();
    for ch in 0..3 {
        let values: Vec<f32> = conv.iter().skip(ch).step_by(3).copied().collect();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let unbiased = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (values.len() - 1) as f32;
        assert!((net.bn1.running_mean()[ch] - 0.1 * mean).abs() < 1e-5);
        assert!((net.bn1.running_var()[ch] - (0.9 + 0.1 * unbiased)).abs() < 1e-4);
    }
}

#[test]
fn bad_labels_and_spatial_outputs_are_errors() {
    let mut net = SmallDigits::new();
    let x = Array4::<f32>::zeros((2, 8, 8, 1));
    let mut opt = Sgd::new(0.1);
    assert!(matches!(
        net.train_step(x.view(), &[1], &mut opt),
        Err(cnn::Error::LabelCount { labels: 1, batch: 2 })
    ));
    assert!(matches!(
        net.train_step(x.view(), &[1, 10], &mut opt),
        Err(cnn::Error::LabelOutOfRange { index: 1, label: 10, classes: 10 })
    ));
    assert!(matches!(net.accuracy(x.view(), &[1, 12]), Err(cnn::Error::LabelOutOfRange { .. })));
    assert!(matches!(
        net.train_step(Array4::zeros((2, 9, 8, 1)).view(), &[1, 1], &mut opt),
        Err(cnn::Error::InputShape { .. })
    ));
    cnn::cnn! {
        struct Spatial { input 4x4x1; conv 2 k3; }
    }
    let mut spatial = Spatial::new();
    let x = Array4::<f32>::zeros((1, 4, 4, 1));
    let err = spatial.train_step(x.view(), &[0], &mut opt).unwrap_err();
    assert!(matches!(err, cnn::Error::OutputNotFlat { output: cnn::Shape::Hwc(2, 2, 2) }), "{err}");
    assert!(spatial.accuracy(x.view(), &[0]).is_err());
}
