//! One LeNet-5 training step (forward, backward, Adam) on 64 MNIST images,
//! in images per second. `cargo bench --bench training`; threads follow
//! `RAYON_NUM_THREADS`.

use std::hint::black_box;

use cnn::data::read_mnist;
use cnn::ndarray::s;
use cnn::optim::Adam;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = training_step
}
criterion_main!(benches);
