//! The CNN of chapter 10 of Grokking Deep Learning (A. Trask), trained the
//! book's way: the first 1,000 MNIST training images, batches of 128, 300
//! iterations, plain SGD. The book printed `I:299 Test-Acc:0.8774 Train-Acc:0.814`.
//!
//! The book's hidden layer is `26*26*16 = 10,816` wide, and its code gets
//! there by hand; here the macro works it out. Its update `alpha * (y - p) /
//! (128 * 128)` with `alpha = 2` is SGD with a learning rate of `2/128` on
//! the mean cross-entropy of a softmax output. Its initialisation is kept:
//! kernels in `U(-0.01, 0.01)`, dense weights in `U(-0.1, 0.1)`.
//!
//! `cargo run --release --example grokking`

use cnn::data::read_mnist;
use cnn::ndarray::s;
use cnn::optim::Sgd;
use rand::{Rng, SeedableRng};

cnn::cnn! {
    pub struct GrokkingCnn {
        input 28x28x1;
        conv 16 k3 nobias tanh;   // 26x26x16
        dropout 0.5;
        flatten;                  // 10,816
        dense 10 nobias;
        softmax;
    }
}

fn main() -> Result<(), cnn::Error> {
    let (train, test) = read_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))?;
    let images = train.images.slice(s![..1000, .., .., ..]);
    let labels = &train.labels[..1000];

    let mut net = GrokkingCnn::with_seed(0);
    // The book's initialisation.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    net.conv1.weight_mut().mapv_inplace(|_| rng.random_range(-0.01..0.01));
    net.dense1.weight_mut().mapv_inplace(|_| rng.random_range(-0.1..0.1));

    let batch = 128;
    let mut opt = Sgd::new(2.0 / batch as f32);
    for j in 0..300 {
        // The book takes int(1000 / 128) = 7 whole batches an iteration.
        for i in 0..images.dim().0 / batch {
            let (start, end) = (i * batch, (i + 1) * batch);
            net.train_step(images.slice(s![start..end, .., .., ..]), &labels[start..end], &mut opt)?;
        }
        if j % 10 == 9 || j == 0 {
            let test_acc = net.accuracy(test.images.view(), &test.labels)?;
            let train_acc = net.accuracy(images, labels)?;
            println!("I:{j} Test-Acc:{test_acc:.4} Train-Acc:{train_acc:.4}");
        }
    }
    println!("the book: I:299 Test-Acc:0.8774 Train-Acc:0.814 (its Train-Acc is counted with dropout on)");
    Ok(())
}
