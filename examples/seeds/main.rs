//! Prints the summary of each classic network and times a forward pass.
//!
//! `cargo run --release --example seeds`

mod nets;

use std::time::Instant;

use cnn::Network;
use cnn::ndarray::Array4;
use nets::{Cifar3Block, FastaiMnist, LeNet5, PytorchQuestion, TfCifar};

/// Prints `N::summary` and the time per image of a batch of 64.
fn show<N: Network>(summary: String) -> Result<(), cnn::Error> {
    println!("{summary}");
    let net = N::new();
    let cnn::Shape::Hwc(h, w, c) = N::INPUT else { unreachable!("inputs are HxWxC") };
    let batch = 64;
    let x = Array4::from_shape_fn((batch, h, w, c), |(n, y, x, ch)| {
        ((n + 3 * y + 5 * x + 7 * ch) % 11) as f32 / 11.0
    });
    net.forward(x.view())?; // warm up
    let runs = 10;
    let start = Instant::now();
    for _ in 0..runs {
        net.forward(x.view())?;
    }
    let per_image = start.elapsed() / (runs * batch as u32);
    println!("forward: {per_image:?} per image (batch of {batch}, output {} each)\n", N::OUTPUT);
    Ok(())
}

fn main() -> Result<(), cnn::Error> {
    show::<LeNet5>(LeNet5::summary())?;
    show::<TfCifar>(TfCifar::summary())?;
    show::<Cifar3Block>(Cifar3Block::summary())?;
    show::<FastaiMnist>(FastaiMnist::summary())?;
    show::<PytorchQuestion>(PytorchQuestion::summary())?;
    Ok(())
}
