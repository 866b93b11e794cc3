//! A small ResNet (residual blocks with batchnorm, a projection shortcut
//! where the shape changes) trained on the shipped MNIST: its summary, a
//! progress bar per epoch, test accuracy after each.
//!
//! `cargo run --release --example resnet`; threads follow `RAYON_NUM_THREADS`.

use std::time::Instant;

use cnn::data::{Dataset, read_mnist};
use cnn::ndarray::s;
use cnn::optim::Adam;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;

cnn::cnn! {
    /// Three stages of torchvision-style basic blocks, 28x28 -> 14x14 -> 7x7.
    pub struct MnistResNet {
        input 28x28x1;
        conv1: conv 16 k3 p1 nobias;
        bn1: batchnorm;
        relu;
        layer1: {
            residual { conv1: conv 16 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 16 k3 p1 nobias; bn2: batchnorm } relu;
        };
        layer2: {
            residual { conv1: conv 32 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 32 k3 p1 nobias; bn2: batchnorm }
                downsample: shortcut { conv 32 k1 s2 nobias floor; batchnorm } relu;
        };
        layer3: {
            residual { conv1: conv 64 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm }
                downsample: shortcut { conv 64 k1 s2 nobias floor; batchnorm } relu;
        };
        avgpool: globalavgpool;
        fc: dense 64 -> 10;
    }
}

const EPOCHS: usize = 3;
const BATCH: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = read_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))?;
    println!("{}", MnistResNet::summary());
    let mut net = MnistResNet::with_seed(1);
    let mut opt = Adam::new(2e-3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for e in 1..=EPOCHS {
        let bar = ProgressBar::new(train.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:40}] {pos}/{len} {per_sec} {msg}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(e.to_string());
        // A step schedule: 2e-3, then 6e-4, then 1.8e-4.
        opt.set_lr(2e-3 * 0.3f32.powi(e as i32 - 1));
        let start = Instant::now();
        let mean = epoch(&mut net, &train, &mut opt, &mut rng, &bar)?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        println!(
            "epoch {e}: loss {mean:.4}, test accuracy {:.2}%, {seconds:.1} s ({:.0} images/s)",
            100.0 * accuracy(&net, &test)?,
            train.len() as f64 / seconds
        );
    }
    Ok(())
}

/// One epoch in shuffled batches; returns the mean loss.
fn epoch(
    net: &mut MnistResNet,
    train: &Dataset,
    opt: &mut Adam,
    rng: &mut rand_chacha::ChaCha8Rng,
    bar: &ProgressBar,
) -> Result<f32, cnn::Error> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(rng);
    let mut sum = 0.0;
    for (i, indices) in order.chunks(BATCH).enumerate() {
        let batch = train.select(indices);
        let loss = net.train_step(batch.images.view(), &batch.labels, opt)?;
        sum += loss;
        bar.inc(indices.len() as u64);
        if i % 20 == 0 {
            bar.set_message(format!("loss {loss:.4}"));
        }
    }
    Ok(sum / order.len().div_ceil(BATCH) as f32)
}

/// Test accuracy, in batches to keep memory small.
fn accuracy(net: &MnistResNet, test: &Dataset) -> Result<f32, cnn::Error> {
    let mut correct = 0.0;
    for start in (0..test.len()).step_by(1000) {
        let end = (start + 1000).min(test.len());
        let x = test.images.slice(s![start..end, .., .., ..]);
        correct += net.accuracy(x, &test.labels[start..end])? * (end - start) as f32;
    }
    Ok(correct / test.len() as f32)
}
