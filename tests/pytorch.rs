//! `load_pytorch` against an independent NCHW reference: PyTorch-layout
//! tensors are written with the `safetensors` crate, the expected output is
//! computed by nested loops over NCHW, as `nn.Sequential` would.

mod common;

#[path = "../examples/seeds/nets.rs"]
mod nets;

use std::path::{Path, PathBuf};

use cnn::ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use common::{assert_close, rng};
use nets::{Cifar3Block, LeNet5, TfCifar};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};

/// One module of an `nn.Sequential`, with PyTorch's layouts.
enum Module {
    /// weight OIHW, bias, stride, padding
    Conv(Array4<f32>, Array1<f32>, usize, usize),
    /// weight [OUT, IN], bias
    Linear(Array2<f32>, Array1<f32>),
    /// weight, bias, running mean, running var (eps 1e-5)
    BatchNorm2d([Array1<f32>; 4]),
    MaxPool(usize),
    AvgPool(usize),
    Flatten,
    Relu,
    Tanh,
}

fn uniform1(r: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Array1<f32> {
    Array1::from_shape_simple_fn(n, || r.random_range(lo..hi))
}

fn conv(r: &mut ChaCha8Rng, cin: usize, cout: usize, k: usize, pad: usize) -> Module {
    let bound = 1.0 / ((cin * k * k) as f32).sqrt();
    let w = Array4::from_shape_simple_fn((cout, cin, k, k), || r.random_range(-bound..bound));
    Module::Conv(w, uniform1(r, cout, -bound, bound), 1, pad)
}

fn linear(r: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Module {
    let bound = 1.0 / (inputs as f32).sqrt();
    Module::Linear(
        Array2::from_shape_simple_fn((outputs, inputs), || r.random_range(-bound..bound)),
        uniform1(r, outputs, -bound, bound),
    )
}

fn batchnorm(r: &mut ChaCha8Rng, c: usize) -> Module {
    Module::BatchNorm2d([
        uniform1(r, c, 0.5, 1.5),
        uniform1(r, c, -0.5, 0.5),
        uniform1(r, c, -0.3, 0.3),
        uniform1(r, c, 0.5, 2.0),
    ])
}

/// The forward pass of the `nn.Sequential` on an NCHW batch, as nested loops.
fn run(modules: &[Module], x: ArrayD<f32>) -> ArrayD<f32> {
    modules.iter().fold(x, |x, m| match m {
        Module::Conv(w, b, stride, pad) => {
            let (n, cin, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
            let (cout, _, k, _) = w.dim();
            let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
            ArrayD::from_shape_fn(IxDyn(&[n, cout, oh, ow]), |i| {
                let (b_, o, oy, ox) = (i[0], i[1], i[2], i[3]);
                let mut sum = b[o] as f64;
                for ci in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (oy * stride + ky) as i64 - *pad as i64,
                                (ox * stride + kx) as i64 - *pad as i64,
                            );
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                sum +=
                                    x[[b_, ci, iy as usize, ix as usize]] as f64 * w[[o, ci, ky, kx]] as f64;
                            }
                        }
                    }
                }
                sum as f32
            })
        }
        Module::MaxPool(k) | Module::AvgPool(k) => {
            let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
            let is_max = matches!(m, Module::MaxPool(_));
            ArrayD::from_shape_fn(IxDyn(&[n, c, h / k, w / k]), |i| {
                let cells = (0..k * k).map(|j| x[[i[0], i[1], i[2] * k + j / k, i[3] * k + j % k]]);
                if is_max {
                    cells.fold(f32::NEG_INFINITY, f32::max)
                } else {
                    cells.sum::<f32>() / (k * k) as f32
                }
            })
        }
        Module::BatchNorm2d([g, b, mean, var]) => {
            let mut y = x.clone();
            for (i, v) in y.indexed_iter_mut() {
                let c = i[1];
                *v = (*v - mean[c]) / (var[c] + 1e-5).sqrt() * g[c] + b[c];
            }
            y
        }
        // NCHW flatten: C, H, W order, as nn.Flatten.
        Module::Flatten => {
            let n = x.shape()[0];
            let rest = x.len() / n.max(1);
            x.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&[n, rest])).unwrap()
        }
        Module::Linear(w, b) => {
            let (n, inputs) = (x.shape()[0], x.shape()[1]);
            ArrayD::from_shape_fn(IxDyn(&[n, w.dim().0]), |i| {
                b[i[1]] + (0..inputs).map(|j| x[[i[0], j]] * w[[i[1], j]]).sum::<f32>()
            })
        }
        Module::Relu => x.mapv(|v| v.max(0.0)),
        Module::Tanh => x.mapv(f32::tanh),
    })
}

/// Writes `model.state_dict()` as `safetensors.torch.save_file` would, in `dtype`.
fn save_state_dict(modules: &[Module], path: &Path, dtype: Dtype) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut put =
        |name: String, shape: &[usize], values: Vec<f32>| tensors.push((name, shape.to_vec(), values));
    for (i, m) in modules.iter().enumerate() {
        match m {
            Module::Conv(w, b, ..) => {
                put(format!("{i}.weight"), w.shape(), w.iter().copied().collect());
                put(format!("{i}.bias"), b.shape(), b.to_vec());
            }
            Module::Linear(w, b) => {
                put(format!("{i}.weight"), w.shape(), w.iter().copied().collect());
                put(format!("{i}.bias"), b.shape(), b.to_vec());
            }
            Module::BatchNorm2d([g, b, mean, var]) => {
                for (name, v) in [("weight", g), ("bias", b), ("running_mean", mean), ("running_var", var)] {
                    put(format!("{i}.{name}"), v.shape(), v.to_vec());
                }
            }
            _ => {}
        }
    }
    let encode = |values: &[f32]| -> Vec<u8> {
        match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F64 => values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect(),
            Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
            Dtype::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
            _ => unreachable!(),
        }
    };
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), encode(v))).collect();
    // BatchNorm2d also saves num_batches_tracked, an int64 scalar.
    for (i, m) in modules.iter().enumerate() {
        if let Module::BatchNorm2d(_) = m {
            bytes.push((format!("{i}.num_batches_tracked"), vec![], 100i64.to_le_bytes().to_vec()));
        }
    }
    let views = bytes.iter().map(|(n, s, b)| {
        let dtype = if n.ends_with("num_batches_tracked") { Dtype::I64 } else { dtype };
        (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap())
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnn-pytorch-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An NCHW batch, and the same batch in NHWC.
fn batch(r: &mut ChaCha8Rng, n: usize, c: usize, h: usize, w: usize) -> (ArrayD<f32>, Array4<f32>) {
    let nchw = Array4::from_shape_simple_fn((n, c, h, w), || r.random_range(-1.0..1.0));
    let nhwc = nchw.view().permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned();
    (nchw.into_dyn(), nhwc)
}

fn lenet5(r: &mut ChaCha8Rng) -> Vec<Module> {
    use Module::*;
    vec![
        conv(r, 1, 6, 5, 0),
        Tanh,
        AvgPool(2),
        conv(r, 6, 16, 5, 0),
        Tanh,
        AvgPool(2),
        Flatten,
        linear(r, 400, 120),
        Tanh,
        linear(r, 120, 84),
        Tanh,
        linear(r, 84, 10),
    ]
}

#[test]
fn lenet5_from_pytorch_matches_nchw_reference() {
    let mut r = rng(20);
    let modules = lenet5(&mut r);
    let path = temp_path("lenet5.safetensors");
    save_state_dict(&modules, &path, Dtype::F32);
    let net = LeNet5::load_pytorch(&path).unwrap();
    let (nchw, nhwc) = batch(&mut r, 3, 1, 32, 32);
    let expected = run(&modules, nchw).into_dimensionality().unwrap();
    assert_close(&net.forward(nhwc.view()).unwrap(), &expected, 1e-4, "LeNet-5");
}

#[test]
fn tf_cifar_from_pytorch_matches_nchw_reference() {
    use Module::*;
    let mut r = rng(21);
    let modules = vec![
        conv(&mut r, 3, 32, 3, 0),
        Relu,
        MaxPool(2),
        conv(&mut r, 32, 64, 3, 0),
        Relu,
        MaxPool(2),
        conv(&mut r, 64, 64, 3, 0),
        Relu,
        Flatten,
        linear(&mut r, 1024, 64),
        Relu,
        linear(&mut r, 64, 10),
    ];
    let path = temp_path("tf-cifar.safetensors");
    save_state_dict(&modules, &path, Dtype::F32);
    let net = TfCifar::load_pytorch(&path).unwrap();
    let (nchw, nhwc) = batch(&mut r, 2, 3, 32, 32);
    let expected = run(&modules, nchw).into_dimensionality().unwrap();
    assert_close(&net.forward(nhwc.view()).unwrap(), &expected, 1e-4, "TF CIFAR");
}

#[test]
fn cifar_3block_with_batchnorm_from_pytorch_matches_nchw_reference() {
    use Module::*;
    let mut r = rng(22);
    let mut modules = Vec::new();
    for (cin, cout) in [(3, 32), (32, 64), (64, 64)] {
        modules.extend([conv(&mut r, cin, cout, 3, 1), batchnorm(&mut r, cout), Relu, MaxPool(2)]);
    }
    modules.extend([Flatten, linear(&mut r, 64 * 4 * 4, 10)]);
    let path = temp_path("cifar-3block.safetensors");
    save_state_dict(&modules, &path, Dtype::F32);
    let net = Cifar3Block::load_pytorch(&path).unwrap();
    let (nchw, nhwc) = batch(&mut r, 2, 3, 32, 32);
    let expected = run(&modules, nchw).into_dimensionality().unwrap();
    assert_close(&net.forward(nhwc.view()).unwrap(), &expected, 1e-4, "3-block CIFAR");
}

#[test]
fn f64_f16_and_bf16_tensors_are_converted() {
    let mut r = rng(23);
    let modules = lenet5(&mut r);
    let (nchw, nhwc) = batch(&mut r, 2, 1, 32, 32);
    let expected: Array2<f32> = run(&modules, nchw).into_dimensionality().unwrap();
    // Half precision keeps ~3 significant digits of each weight.
    for (dtype, tol) in [(Dtype::F64, 1e-4), (Dtype::F16, 1e-2), (Dtype::BF16, 5e-2)] {
        let path = temp_path(&format!("lenet5-{dtype:?}.safetensors"));
        save_state_dict(&modules, &path, dtype);
        let net = LeNet5::load_pytorch(&path).unwrap();
        assert_close(&net.forward(nhwc.view()).unwrap(), &expected, tol, &format!("{dtype:?}"));
    }
}

#[test]
fn pytorch_errors_name_the_tensor_and_both_shapes_in_pytorch_order() {
    let mut r = rng(24);
    let mut modules = lenet5(&mut r);
    modules[7] = linear(&mut r, 401, 120);
    let path = temp_path("lenet5-wrong.safetensors");
    save_state_dict(&modules, &path, Dtype::F32);
    let err = LeNet5::load_pytorch(&path).err().unwrap();
    assert!(
        matches!(&err, cnn::Error::TensorShape { name, expected, found, .. }
            if name == "7.weight" && expected == &[120, 400] && found == &[120, 401]),
        "{err}"
    );
    assert!(err.to_string().contains("[120, 400]") && err.to_string().contains("[120, 401]"));
}
