//! LeNet-5 training (forward, backward, Adam) on MNIST, in images per
//! second: one step on 64 images (criterion), then one whole epoch in
//! shuffled batches of 64, timed once (`epoch` below; `benches/peers` runs
//! PyTorch's same epoch beside it). `cargo bench --bench training`; threads
//! follow `RAYON_NUM_THREADS`. `-- --epoch` runs the epoch alone.

use std::hint::black_box;

use cnn::data::read_mnist;
use cnn::ndarray::s;
use cnn::optim::Adam;
use criterion::{Criterion, Throughput, criterion_group};

cnn::cnn! {
    pub struct LeNet5 {
        input 28x28x1;
        conv 6 k5 p2 relu; maxpool 2;
        conv 16 k5 relu; maxpool 2;
        flatten;
        dense 400 -> 120 relu; dense 84 relu; dense 10;
    }
}

fn training_step(c: &mut Criterion) {
    let (train, _) = read_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).unwrap();
    let (images, labels) = (train.images.slice(s![..64, .., .., ..]).to_owned(), &train.labels[..64]);
    let mut net = LeNet5::new();
    let mut opt = Adam::new(1e-3);
    let mut group = c.benchmark_group("LeNet-5 train step, batch 64");
    group.throughput(Throughput::Elements(64));
    group.bench_function("train_step", |b| {
        b.iter(|| black_box(net.train_step(images.view(), labels, &mut opt).unwrap()))
    });
    group.finish();
}

/// One epoch of the 60,000 training images, batches of 64 in a shuffled
/// order, after 20 steps of warm-up: too long for criterion's samples.
fn epoch() {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;

    let (train, _) = read_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).unwrap();
    let mut net = LeNet5::new();
    let mut opt = Adam::new(1e-3);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let batches: Vec<_> = order.chunks(64).collect();
    for indices in &batches[..20] {
        let batch = train.select(indices);
        net.train_step(batch.images.view(), &batch.labels, &mut opt).unwrap();
    }
    let start = std::time::Instant::now();
    let mut loss = 0.0;
    for indices in &batches {
        let batch = train.select(indices);
        loss += net.train_step(batch.images.view(), &batch.labels, &mut opt).unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "LeNet-5 MNIST epoch, batch 64, {} threads: {seconds:.2} s, {:.0} images/s (mean loss {:.4})",
        rayon::current_num_threads(),
        train.len() as f64 / seconds,
        loss / batches.len() as f32
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = training_step
}

fn main() {
    if !std::env::args().any(|a| a == "--epoch") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    epoch();
}
