//! LeNet-5 trained on the full MNIST: 3 epochs, a progress bar per epoch,
//! loss and test accuracy after each, and the curves drawn to a PNG.
//!
//! `cargo run --release --example mnist`; threads follow `RAYON_NUM_THREADS`.

use std::time::Instant;

use cnn::data::{Dataset, read_mnist};
use cnn::ndarray::s;
use cnn::optim::Adam;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

cnn::cnn! {
    /// LeNet-5 on 28x28 inputs, with ReLU and max pooling as is usual now.
    pub struct LeNet5 {
        input 28x28x1;
        conv 6 k5 p2 relu;       // 28x28x6
        maxpool 2;               // 14x14x6
        conv 16 k5 relu;         // 10x10x16
        maxpool 2;               // 5x5x16
        flatten;                 // 400
        dense 400 -> 120 relu;
        dense 84 relu;
        dense 10;
    }
}

const EPOCHS: usize = 3;
const BATCH: usize = 64;

/// One epoch of training in shuffled batches; returns the mean loss of each batch.
fn epoch(
    net: &mut LeNet5,
    train: &Dataset,
    opt: &mut Adam,
    rng: &mut rand_chacha::ChaCha8Rng,
    bar: &ProgressBar,
) -> Result<Vec<f32>, cnn::Error> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(rng);
    let mut losses = Vec::new();
    for indices in order.chunks(BATCH) {
        let batch = train.select(indices);
        let loss = net.train_step(batch.images.view(), &batch.labels, opt)?;
        losses.push(loss);
        bar.inc(indices.len() as u64);
        if losses.len() % 20 == 0 {
            bar.set_message(format!("loss {loss:.4}"));
        }
    }
    Ok(losses)
}

/// Test accuracy, in batches to keep memory small.
fn accuracy(net: &LeNet5, test: &Dataset) -> Result<f32, cnn::Error> {
    let mut correct = 0.0;
    for start in (0..test.len()).step_by(1000) {
        let end = (start + 1000).min(test.len());
        let x = test.images.slice(s![start..end, .., .., ..]);
        correct += net.accuracy(x, &test.labels[start..end])? * (end - start) as f32;
    }
    Ok(correct / test.len() as f32)
}

/// The training loss per batch (a moving average of 50) and the test
/// error rate per epoch, on one log-scale axis, with axis titles, tick
/// labels and a legend in DejaVu Sans (shipped in `examples/fonts`, so that
/// no system font is needed).
fn plot(
    path: &std::path::Path,
    losses: &[f32],
    accuracies: &[f32],
) -> Result<(), Box<dyn std::error::Error>> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("fonts/DejaVuSans.ttf"))
        .map_err(|_| "the shipped font does not load")?;
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let steps = losses.len() as f32;
    let batches_per_epoch = steps / accuracies.len().max(1) as f32;
    let mut chart = ChartBuilder::on(&root)
        .caption("LeNet-5 on MNIST", ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f32..steps / batches_per_epoch, (1e-3f32..3f32).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("epoch")
        .y_desc("loss / error rate (log scale)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    let smoothed = losses
        .windows(50)
        .enumerate()
        .map(|(i, w)| ((i as f32 + 50.0) / batches_per_epoch, w.iter().sum::<f32>() / 50.0));
    chart
        .draw_series(LineSeries::new(smoothed, RED.stroke_width(2)))?
        .label("training loss (mean of 50 batches)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], RED.stroke_width(2)));
    let errors = accuracies.iter().enumerate().map(|(e, a)| ((e + 1) as f32, (1.0 - a).max(1e-3)));
    chart
        .draw_series(LineSeries::new(errors.clone(), BLUE.stroke_width(3)))?
        .label("test error rate, after each epoch")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLUE.stroke_width(3)));
    chart.draw_series(errors.map(|p| Circle::new(p, 5, BLUE.filled())))?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = read_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))?;
    println!(
        "MNIST: {} training, {} test images; {} threads",
        train.len(),
        test.len(),
        rayon::current_num_threads()
    );
    println!("{}", LeNet5::summary());
    let mut net = LeNet5::with_seed(1);
    let mut opt = Adam::new(2e-3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut all_losses, mut accuracies) = (Vec::new(), Vec::new());
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
        let losses = epoch(&mut net, &train, &mut opt, &mut rng, &bar)?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let mean = losses.iter().sum::<f32>() / losses.len() as f32;
        let accuracy = accuracy(&net, &test)?;
        println!(
            "epoch {e}: loss {mean:.4}, test accuracy {:.2}%, {seconds:.1} s ({:.0} images/s)",
            100.0 * accuracy,
            train.len() as f64 / seconds
        );
        all_losses.extend(losses);
        accuracies.push(accuracy);
    }
    // Cargo's target directory, wherever `CARGO_TARGET_DIR` puts it,
    // made if it is not there yet: three epochs are not lost to a missing folder.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), Into::into);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("mnist-curves.png");
    plot(&path, &all_losses, &accuracies)?;
    println!(
        "curves: {} (red: training loss, 50-batch mean; blue: test error per epoch; log scale)",
        path.display()
    );
    Ok(())
}
