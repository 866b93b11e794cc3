//! Export: ONNX models that onnxruntime runs as `forward` does, and the
//! PyTorch source of every network, whose weights trained in PyTorch load
//! back with `load_pytorch`.

mod common;

#[path = "../examples/seeds/nets.rs"]
mod nets;

// The networks of the other examples, as they are.
#[allow(dead_code)]
#[path = "../examples/digits.rs"]
mod digits;
#[allow(dead_code)]
#[path = "../examples/grokking.rs"]
mod grokking;
#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist;
#[allow(dead_code)]
#[path = "../examples/resnet.rs"]
mod resnet;

use std::path::{Path, PathBuf};
use std::process::Command;

use cnn::Network;
use common::{random4, rng};
use nets::{Cifar3Block, FastaiMnist, LeNet5, PytorchQuestion, TfCifar};

cnn::cnn! {
    /// Every layer, option and block that ONNX must say.
    pub struct Everything {
        input 17x15x4;
        stem: conv 4 -> 8 k3x5 s2x1 p1x2 nobias floor leakyrelu 0.2;
        batchnorm 1e-3;
        conv 8 k4 same g4 sigmoid;
        conv 12 k3 same d2 relu6;
        maxpool 3 s2 p1 ceil;
        residual { conv 12 k3 p1; batchnorm; silu; conv 12 k3 p1 } tanh;
        residual { conv 16 k3 s2 p1 floor } down: shortcut { conv 16 k1 s2 floor; batchnorm } relu;
        concat { conv 4 k1 } pool: { avgpool 3 s1 p1; conv 6 k1 } {} relu6;
        upsample 2x3;
        avgpool 2 ceil;
        flatten;
        batchnorm;
        dropout 0.25;
        dense 26;
        residual { dense 26 -> 26 tanh; dense 26 };
        dense 5 softmax;
    }

    /// A head that stays spatial, and global max pooling inside a concat.
    pub struct Spatial {
        input 9x9x2;
        conv 6 k3 p1 relu;
        concat { globalmaxpool } { globalavgpool; dense 3 sigmoid };
        dense 4;
    }

    pub struct SpatialOutput {
        input 8x8x3;
        conv 4 k3 p1 relu;
        upsample 2;
        residual { conv 4 k3 p1 };
        softmax;
    }
}

// Random stacks: drawn by a throwaway script (seed 7) from convs with random
// kernels, strides, paddings, dilations and groups, pools with and without
// `ceil_mode`, batchnorm, every activation and dropout; kept where PyTorch
// ran them, and printed by `scripts/cnn_from_torch.py`.
cnn::cnn! {
    pub struct Random1 {
        input 10x14x3;
        conv 3 -> 2 k3 p1 d2;                   // 0: 8x12x2
        batchnorm;                              // 1: 8x12x2
        flatten;                                // 2: 192
        dense 192 -> 3;                         // 3: 3
    }
}
cnn::cnn! {
    pub struct Random2 {
        input 16x14x1;
        relu;                                   // 0: 16x14x1
        conv 1 -> 12 k1 s2 floor;               // 1: 8x7x12
        globalavgpool;                          // 2: 1x1x12
        flatten;                                // 3: 12
        dense 12 -> 4;                          // 4: 4
    }
}
cnn::cnn! {
    pub struct Random3 {
        input 10x16x4;
        sigmoid;                                // 0: 10x16x4
        silu;                                   // 1: 10x16x4
        flatten;                                // 2: 640
        dense 640 -> 6;                         // 3: 6
    }
}
cnn::cnn! {
    pub struct Random4 {
        input 13x9x2;
        dropout 0.2;                            // 0: 13x9x2
        conv 2 -> 2 k2 s2 p2 d2 g2;             // 1: 8x6x2
        maxpool k3 p1 ceil;                     // 2: 3x3x2
        conv 2 -> 4 k1 s2 p1 d2 g2 nobias;      // 3: 3x3x4
        dropout 0.2;                            // 4: 3x3x4
        batchnorm;                              // 5: 3x3x4
        flatten;                                // 6: 36
        dense 36 -> 2;                          // 7: 2
    }
}
cnn::cnn! {
    pub struct Random5 {
        input 16x14x1;
        maxpool k2 p1;                          // 0: 9x8x1
        relu6;                                  // 1: 9x8x1
        avgpool k3 p1 floor;                    // 2: 3x3x1
        flatten;                                // 3: 9
        dense 9 -> 2;                           // 4: 2
    }
}
cnn::cnn! {
    pub struct Random6 {
        input 15x19x3;
        conv 3 -> 12 k3 s2 p2;                  // 0: 9x11x12
        dropout 0.2;                            // 1: 9x11x12
        flatten;                                // 2: 1188
        dense 1188 -> 5;                        // 3: 5
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnn-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `name.onnx` and its input with `forward`'s output.
fn write<N: Network>(net: &N, name: &str, dir: &Path, save: impl Fn(&N, &Path) -> Result<(), cnn::Error>) {
    save(net, &dir.join(format!("{name}.onnx"))).unwrap();
    let cnn::Shape::Hwc(h, w, c) = N::INPUT else { unreachable!("inputs are HxWxC") };
    let x = random4(&mut rng(name.len() as u64), (3, h, w, c));
    let y = cnn::Output::into_dyn(net.forward(x.view()).unwrap());
    let bytes = |a: &[f32]| a.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let (xb, yb) = (bytes(x.as_slice().unwrap()), bytes(y.as_standard_layout().as_slice().unwrap()));
    let tensors = [
        (
            "input",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, x.shape().to_vec(), &xb).unwrap(),
        ),
        (
            "output",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, y.shape().to_vec(), &yb).unwrap(),
        ),
    ];
    std::fs::write(
        dir.join(format!("{name}.io.safetensors")),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
}

/// Networks with random batchnorm statistics, so that they matter.
fn randomized<N: Network>(seed: u64, bns: impl Fn(&mut N) -> Vec<&mut cnn::layers::BatchNorm>) -> N {
    use rand::Rng;
    let mut net = N::with_seed(seed);
    let mut r = rng(seed);
    for bn in bns(&mut net) {
        bn.running_mean_mut().mapv_inplace(|_| r.random_range(-0.3..0.3));
        bn.running_var_mut().mapv_inplace(|_| r.random_range(0.5..2.0));
        bn.weight_mut().mapv_inplace(|_| r.random_range(0.5..1.5));
        bn.bias_mut().mapv_inplace(|_| r.random_range(-0.3..0.3));
    }
    net
}

#[test]
fn onnxruntime_runs_every_network_as_forward_does() {
    let dir = temp_dir("onnx");
    write(&LeNet5::with_seed(1), "lenet5", &dir, |n, p| n.save_onnx(p));
    write(&TfCifar::with_seed(2), "tfcifar", &dir, |n, p| n.save_onnx(p));
    let cifar = randomized(3, |n: &mut Cifar3Block| vec![&mut n.bn1, &mut n.bn2, &mut n.bn3]);
    write(&cifar, "cifar3block", &dir, |n, p| n.save_onnx(p));
    write(&FastaiMnist::with_seed(4), "fastai", &dir, |n, p| n.save_onnx(p));
    write(&PytorchQuestion::with_seed(5), "pytorchquestion", &dir, |n, p| n.save_onnx(p));
    let everything = randomized(6, |n: &mut Everything| {
        vec![&mut n.bn1, &mut n.residual1_1, &mut n.residual2_down_1, &mut n.bn2]
    });
    write(&everything, "everything", &dir, |n, p| n.save_onnx(p));
    write(&Spatial::with_seed(7), "spatial", &dir, |n, p| n.save_onnx(p));
    write(&SpatialOutput::with_seed(8), "spatialoutput", &dir, |n, p| n.save_onnx(p));
    write(&digits::DigitsNet::with_seed(9), "digits", &dir, |n, p| n.save_onnx(p));
    write(&grokking::GrokkingCnn::with_seed(10), "grokking", &dir, |n, p| n.save_onnx(p));
    write(&mnist::LeNet5::with_seed(11), "mnist", &dir, |n, p| n.save_onnx(p));
    let resnet = randomized(12, |n: &mut resnet::MnistResNet| {
        vec![&mut n.bn1, &mut n.layer1_0_bn2, &mut n.layer2_0_downsample_1, &mut n.layer3_0_bn1]
    });
    write(&resnet, "resnet", &dir, |n, p| n.save_onnx(p));
    write(&Random1::with_seed(21), "random1", &dir, |n, p| n.save_onnx(p));
    write(&Random2::with_seed(22), "random2", &dir, |n, p| n.save_onnx(p));
    write(&Random3::with_seed(23), "random3", &dir, |n, p| n.save_onnx(p));
    write(&Random4::with_seed(24), "random4", &dir, |n, p| n.save_onnx(p));
    write(&Random5::with_seed(25), "random5", &dir, |n, p| n.save_onnx(p));
    write(&Random6::with_seed(26), "random6", &dir, |n, p| n.save_onnx(p));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_onnx.py");
    match Command::new("python3").arg(script).arg(&dir).output() {
        Ok(out) if out.status.success() => println!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("ModuleNotFoundError") && !required() => {
            eprintln!("skipped: onnx and onnxruntime are not installed (pip install onnx onnxruntime)");
        }
        Ok(out) => panic!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        Err(e) if !required() => eprintln!("skipped: no python3 ({e})"),
        Err(e) => panic!("python3: {e}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CI installs onnxruntime and asks for this test to run, not skip.
fn required() -> bool {
    std::env::var_os("CNN_REQUIRE_ONNXRUNTIME").is_some()
}

#[test]
fn save_onnx_to_a_path_that_cannot_be_written_is_an_io_error_and_leaves_nothing() {
    let dir = temp_dir("onnx-bad");
    let missing = dir.join("no-such-directory").join("net.onnx");
    let err = LeNet5::new().save_onnx(&missing).unwrap_err();
    assert!(matches!(&err, cnn::Error::Io { path, .. } if path == &missing), "{err}");
    // A directory where the file should go: the write fails at the rename.
    let taken = dir.join("taken.onnx");
    std::fs::create_dir_all(taken.join("inside")).unwrap();
    assert!(matches!(LeNet5::new().save_onnx(&taken), Err(cnn::Error::Io { .. })));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["taken.onnx"], "no temporary file is left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The networks whose PyTorch source is a fixture, and their sources.
fn python_sources() -> Vec<(&'static str, &'static str)> {
    vec![
        ("lenet5", LeNet5::pytorch()),
        ("tfcifar", TfCifar::pytorch()),
        ("cifar3block", Cifar3Block::pytorch()),
        ("fastai", FastaiMnist::pytorch()),
        ("pytorchquestion", PytorchQuestion::pytorch()),
        ("everything", Everything::pytorch()),
        ("spatial", Spatial::pytorch()),
        ("spatialoutput", SpatialOutput::pytorch()),
    ]
}

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python");

/// `scripts/make_fixtures.py` builds each network from its source in
/// `tests/fixtures/python`: they must be what `pytorch()` gives today
/// (`CNN_BLESS=1 cargo test --test export` writes them).
#[test]
fn python_sources_are_what_pytorch_gives() {
    for (name, source) in python_sources() {
        let path = Path::new(PYTHON).join(format!("{name}.py"));
        if std::env::var_os("CNN_BLESS").is_some() {
            std::fs::create_dir_all(PYTHON).unwrap();
            std::fs::write(&path, source).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap();
        assert_eq!(committed, source, "{name}: tests/fixtures/python is stale");
    }
}

/// Weights PyTorch made for each network's `pytorch()` class, and its
/// output, as `scripts/make_fixtures.py` saved them.
fn check_loads_back<N: Network + LoadPytorch>(name: &str) {
    let net = N::load_pytorch_path(&Path::new(PYTHON).join(format!("{name}.safetensors")));
    let bytes = std::fs::read(Path::new(PYTHON).join(format!("{name}.io.safetensors"))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |key: &str| {
        let t = file.tensor(key).unwrap();
        let values: Vec<f32> =
            t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        cnn::ndarray::ArrayD::from_shape_vec(t.shape(), values).unwrap()
    };
    let x: cnn::ndarray::Array4<f32> = read("input").into_dimensionality().unwrap();
    let actual = cnn::Output::into_dyn(net.forward(x.view()).unwrap());
    common::assert_close(&actual, &read("output"), 1e-4, name);
}

/// `load_pytorch` of the generated networks, for generic code.
trait LoadPytorch: Sized {
    fn load_pytorch_path(path: &Path) -> Self;
}

macro_rules! load_pytorch {
    ($($net:ty),*) => {$(
        impl LoadPytorch for $net {
            fn load_pytorch_path(path: &Path) -> Self {
                <$net>::load_pytorch(path).unwrap()
            }
        }
    )*};
}

load_pytorch!(LeNet5, TfCifar, Cifar3Block, FastaiMnist, PytorchQuestion, Everything, Spatial, SpatialOutput);

#[test]
fn weights_made_by_the_pytorch_classes_load_back() {
    check_loads_back::<LeNet5>("lenet5");
    check_loads_back::<TfCifar>("tfcifar");
    check_loads_back::<Cifar3Block>("cifar3block");
    check_loads_back::<FastaiMnist>("fastai");
    check_loads_back::<PytorchQuestion>("pytorchquestion");
    check_loads_back::<Everything>("everything");
    check_loads_back::<Spatial>("spatial");
    check_loads_back::<SpatialOutput>("spatialoutput");
}
