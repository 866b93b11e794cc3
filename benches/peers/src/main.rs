//! The six workloads of the speed issue through cnn, candle and tract.
//!
//! `train DIR`: times a train step of a small ResNet (`MnistResNet`) and
//! writes its PyTorch module for `peers.py resnet`.
//!
//! `cnn DIR`: builds each workload with `cnn!` (seed 0), saves its weights
//! and an input batch with cnn's output, and times cnn. `peers DIR`: loads
//! the PyTorch-layout weights and ONNX files that `peers.py` made from
//! those, runs candle and tract on the same input, checks their outputs
//! against cnn's within 1e-4 relative, and times them. Times are medians in
//! ms, appended to `DIR/results.tsv`; threads follow `RAYON_NUM_THREADS`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use cnn::Network;
use cnn::ndarray::{Array4, ArrayD};

cnn::cnn! {
    pub struct W1 { input 32x32x3; conv 32 k7 s2 floor relu; flatten; dense 10; }
    pub struct W2 {
        input 32x32x3; conv 32 k3 relu; maxpool 2; conv 64 k3 relu; maxpool 2 floor; conv 64 k3 relu;
        flatten; dense 64 relu; dense 10;
    }
    pub struct W3 {
        input 32x32x1; conv 6 k5 tanh; avgpool 2; conv 16 k5 tanh; avgpool 2; flatten;
        dense 120 tanh; dense 84 tanh; dense 10;
    }
    pub struct W4 {
        input 28x28x1; conv 8 k5 s2 p2 floor relu; conv 16 k3 s2 p1 floor relu; conv 32 k3 s2 p1 relu;
        conv 32 k3 s2 p1 floor relu; globalavgpool; dense 10;
    }
    pub struct W5 { input 56x56x64; conv 64 k3 p1 nobias; }
    pub struct W6 { input 224x224x3; conv 64 k3 p1 relu; }
}

cnn::cnn! {
    /// examples/resnet.rs's network: blocks and batchnorm, trained in
    /// batches that cannot be split between threads.
    pub struct MnistResNet {
        input 28x28x1;
        conv1: conv 16 k3 p1 nobias; bn1: batchnorm; relu;
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

/// The train steps' batches: the first `STEPS` batches of 64 MNIST
/// training images, in turn (`peers.py resnet` takes the same). Real
/// images, another batch each step, as in training: PyTorch's step time
/// depends on the values it is given.
const STEPS: usize = 20;

/// The median ms of MnistResNet's train step (Adam 1e-3), into
/// `DIR/training.tsv`; its PyTorch module (`pytorch()`) into `DIR/resnet.py`.
fn train_cnn(dir: &Path) {
    std::fs::write(dir.join("resnet.py"), MnistResNet::pytorch()).unwrap();
    let mnist = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");
    let (train, _) = cnn::data::read_mnist(mnist).unwrap();
    let batches: Vec<_> = (0..STEPS).map(|i| train.select(&(64 * i..64 * (i + 1)).collect::<Vec<_>>())).collect();
    let (mut net, mut opt) = (MnistResNet::new(), cnn::optim::Adam::new(1e-3));
    let mut next = batches.iter().cycle();
    let ms = median_ms(15, || {
        let batch = next.next().expect("a cycle");
        net.train_step(batch.images.view(), &batch.labels, &mut opt).unwrap();
    });
    let threads = rayon::current_num_threads();
    println!("cnn    ResNet train step {threads} thread(s): {ms:8.3} ms");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("training.tsv")).unwrap();
    writeln!(file, "cnn\t{threads}\t{ms:.4}").unwrap();
}

/// Each workload as `nn.Sequential`-like lines for the peers: `conv COUT K
/// STRIDE PAD BIAS`, `linear OUT`, `maxpool K`, `avgpool K`, `gap`,
/// `flatten`, `relu`, `tanh`; with its batch and input (H, W, C).
pub const WORKLOADS: [(&str, usize, (usize, usize, usize), &str); 6] = [
    ("W1", 64, (32, 32, 3), "conv 32 7 2 0 1;relu;flatten;linear 10"),
    ("W2", 64, (32, 32, 3), "conv 32 3 1 0 1;relu;maxpool 2;conv 64 3 1 0 1;relu;maxpool 2;conv 64 3 1 0 1;relu;flatten;linear 64;relu;linear 10"),
    ("W3", 256, (32, 32, 1), "conv 6 5 1 0 1;tanh;avgpool 2;conv 16 5 1 0 1;tanh;avgpool 2;flatten;linear 120;tanh;linear 84;tanh;linear 10"),
    ("W4", 256, (28, 28, 1), "conv 8 5 2 2 1;relu;conv 16 3 2 1 1;relu;conv 32 3 2 1 1;relu;conv 32 3 2 1 1;relu;gap;flatten;linear 10"),
    ("W5", 8, (56, 56, 64), "conv 64 3 1 1 0"),
    ("W6", 1, (224, 224, 3), "conv 64 3 1 1 1;relu"),
];

/// The median of `runs` timed calls of `f`, in ms, after warm-up calls for
/// at least 0.2 s (and at least three), as `peers.py` does for the other
/// engines: a thread pool just started may have its threads on one core
/// for the first few ms.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for call in 0.. {
        f();
        if call >= 2 && start.elapsed().as_secs_f64() >= 0.2 {
            break;
        }
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn input(batch: usize, (h, w, c): (usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_fn((batch, h, w, c), |(n, y, x, ch)| ((n * 7 + y * 3 + x * 5 + ch * 11) % 17) as f32 / 17.0 - 0.5)
}

fn write_tensors(path: &Path, tensors: &[(&str, &ArrayD<f32>)]) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, a)| (name.to_string(), a.shape().to_vec(), a.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()));
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn read_tensor(path: &Path, name: &str) -> ArrayD<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor(name).unwrap();
    let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    ArrayD::from_shape_vec(t.shape(), values).unwrap()
}

fn record(dir: &Path, engine: &str, workload: &str, ms: f64) {
    let threads = rayon::current_num_threads();
    println!("{engine:6} {workload} {threads} thread(s): {ms:8.3} ms");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("results.tsv")).unwrap();
    writeln!(file, "{engine}\t{threads}\t{workload}\t{ms:.4}").unwrap();
}

fn run_cnn<N: Network>(dir: &Path, name: &str, batch: usize, hwc: (usize, usize, usize), save: impl Fn(&N, &Path)) {
    let net = N::new();
    let x = input(batch, hwc);
    let y = cnn::Output::into_dyn(net.forward(x.view()).unwrap());
    save(&net, &dir.join(format!("{name}.cnn.safetensors")));
    write_tensors(&dir.join(format!("{name}.io.safetensors")), &[("input", &x.clone().into_dyn()), ("output", &y)]);
    let runs = if batch * hwc.0 * hwc.1 > 100_000 { 15 } else { 31 };
    record(dir, "cnn", name, median_ms(runs, || drop(net.forward(x.view()).unwrap())));
}

mod peers;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(2).map_or("target/peers", String::as_str)).to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    match args.get(1).map(String::as_str) {
        Some("cnn") => {
            let lines: Vec<String> =
                WORKLOADS.iter().map(|(n, b, (h, w, c), spec)| format!("{n}\t{b}\t{h},{w},{c}\t{spec}")).collect();
            std::fs::write(dir.join("workloads.tsv"), lines.join("\n") + "\n").unwrap();
            let (b, s) = (|i: usize| WORKLOADS[i].1, |i: usize| WORKLOADS[i].2);
            run_cnn::<W1>(&dir, "W1", b(0), s(0), |n, p| n.save(p).unwrap());
            run_cnn::<W2>(&dir, "W2", b(1), s(1), |n, p| n.save(p).unwrap());
            run_cnn::<W3>(&dir, "W3", b(2), s(2), |n, p| n.save(p).unwrap());
            run_cnn::<W4>(&dir, "W4", b(3), s(3), |n, p| n.save(p).unwrap());
            run_cnn::<W5>(&dir, "W5", b(4), s(4), |n, p| n.save(p).unwrap());
            run_cnn::<W6>(&dir, "W6", b(5), s(5), |n, p| n.save(p).unwrap());
        }
        Some("peers") => peers::run(&dir),
        Some("train") => train_cnn(&dir),
        _ => eprintln!("usage: cnn-peers cnn|peers|train DIR"),
    }
}
