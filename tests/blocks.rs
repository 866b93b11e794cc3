//! Networks that branch: residuals with and without a projection, a concat
//! of three branches (one the identity), nested blocks and upsampling,
//! against the nested-loop reference, at 1, 2 and 3 threads, and through a
//! weights file.

mod common;

use cnn::layers::{BatchNorm, Conv2d};
use cnn::ndarray::{Array2, Array4, Axis as NdAxis, concatenate};
use cnn::{Network, Shape};
use common::{Win, assert_close, random4, rng};
use rand::Rng;

cnn::cnn! {
    pub struct Branchy {
        input 10x10x3;
        conv 8 k3 p1 relu;
        residual { conv 8 k3 p1; batchnorm; relu; conv 8 k3 p1 } relu;
        residual { conv 12 k3 s2 p1 floor; relu; conv 12 k3 p1 } shortcut { conv 12 k1 s2 floor; batchnorm };
        concat { conv 4 k1 } { maxpool 3 s1 p1; conv 6 k1 relu6 } {} silu;
        upsample 2;
        residual { { conv 22 k1; residual { conv 22 k3 p1 } } };
        globalavgpool;
        residual { dense 22 } relu;
        dense 5;
    }
}

fn win(a: &cnn::layers::Axis) -> Win {
    Win { n: a.input, k: a.kernel, s: a.stride, p: a.pad_before, d: a.dilation, out: a.output }
}

fn conv(layer: &Conv2d, x: &Array4<f32>) -> Array4<f32> {
    let g = layer.geometry();
    common::conv(x.view(), layer.weight(), layer.bias(), win(&g.height), win(&g.width), g.groups)
}

fn bn(layer: &BatchNorm, x: &Array4<f32>) -> Array4<f32> {
    let values = common::batchnorm(
        x.as_standard_layout().as_slice().unwrap(),
        layer.channels(),
        &layer.weight(),
        &layer.bias(),
        &layer.running_mean(),
        &layer.running_var(),
        layer.eps(),
    );
    Array4::from_shape_vec(x.dim(), values).unwrap()
}

fn upsample(x: &Array4<f32>, s: usize) -> Array4<f32> {
    let (n, h, w, c) = x.dim();
    Array4::from_shape_fn((n, h * s, w * s, c), |(i, y, z, ch)| x[[i, y / s, z / s, ch]])
}

fn relu(x: Array4<f32>) -> Array4<f32> {
    x.mapv(|v| v.max(0.0))
}

/// `Branchy` by nested loops, from its tensors.
fn reference(net: &Branchy, x: &Array4<f32>) -> Array2<f32> {
    let t = relu(conv(&net.conv1, x));
    let body = conv(&net.residual1_3, &relu(bn(&net.residual1_1, &conv(&net.residual1_0, &t))));
    let t = relu(body + &t);
    let body = conv(&net.residual2_2, &relu(conv(&net.residual2_0, &t)));
    let shortcut = bn(&net.residual2_shortcut_1, &conv(&net.residual2_shortcut_0, &t));
    let t = body + shortcut;
    let a = conv(&net.concat1_0_0, &t);
    let pooled = common::max_pool(
        t.view(),
        Win { n: 5, k: 3, s: 1, p: 1, d: 1, out: 5 },
        Win { n: 5, k: 3, s: 1, p: 1, d: 1, out: 5 },
    );
    let b = conv(&net.concat1_1_1, &pooled).mapv(|v| v.clamp(0.0, 6.0));
    let joined = concatenate(NdAxis(3), &[a.view(), b.view(), t.view()]).unwrap();
    let t = upsample(&joined.mapv(|v| v * common::sigmoid(v)), 2);
    let inner = conv(&net.residual3_0_0, &t);
    let inner = conv(&net.residual3_0_1_0, &inner) + &inner;
    let t = inner + &t;
    let pooled = common::global_avg(t.view());
    let t = (common::dense(pooled.view(), net.residual4_0.weight(), net.residual4_0.bias()) + &pooled)
        .mapv(|v| v.max(0.0));
    common::dense(t.view(), net.dense1.weight(), net.dense1.bias())
}

/// A network with random batchnorm statistics, so that they matter.
fn network(seed: u64) -> Branchy {
    let mut net = Branchy::with_seed(seed);
    let mut r = rng(seed + 100);
    for bn in [&mut net.residual1_1, &mut net.residual2_shortcut_1] {
        bn.running_mean_mut().mapv_inplace(|_| r.random_range(-0.3..0.3));
        bn.running_var_mut().mapv_inplace(|_| r.random_range(0.5..2.0));
        bn.weight_mut().mapv_inplace(|_| r.random_range(0.5..1.5));
    }
    net
}

#[test]
fn blocks_match_the_reference_with_every_kernel() {
    assert_eq!(Branchy::OUTPUT, Shape::Flat(5));
    let net = network(1);
    let x = random4(&mut rng(2), (3, 10, 10, 3));
    let expected = reference(&net, &x);
    for kernels in cnn::__private::Kernels::ALL {
        net.__cnn_set_kernels(kernels);
        assert_close(&net.forward(x.view()).unwrap(), &expected, 1e-4, &format!("{kernels:?}"));
    }
}

#[test]
fn blocks_are_bit_identical_at_one_two_and_three_threads() {
    let net = network(3);
    let x = random4(&mut rng(4), (7, 10, 10, 3));
    let run = |threads| common::on_threads(threads, || net.forward(x.view()).unwrap());
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    // Each image as it is in a batch.
    let alone = net.forward(x.slice(cnn::ndarray::s![4..5, .., .., ..])).unwrap();
    assert_eq!(alone.row(0), one.row(4));
}

#[test]
fn blocks_name_their_layers_by_path() {
    let names: Vec<(&str, &str)> = Branchy::LAYERS.iter().map(|l| (l.name, l.source)).collect();
    // As in an `nn.Sequential`, the fused relu is module 1: the first residual is 2.
    assert_eq!(names[..3], [("conv1", "conv 8 k3 p1 relu"), ("relu", "relu"), ("2.0", "conv 8 k3 p1")]);
    assert!(
        names.contains(&("2", "residual relu")) && names.contains(&("3.shortcut.0", "conv 12 k1 s2 floor"))
    );
    // A block's activation belongs to its merge: no entry of its own.
    assert!(names.contains(&("4", "concat silu")) && !names.contains(&("silu", "silu")));
    assert!(names.contains(&("3", "residual + shortcut")));
    assert!(names.contains(&("6.0.1.0", "conv 22 k3 p1")));
    let concat = Branchy::LAYERS.iter().find(|l| l.name == "4").unwrap();
    assert_eq!(concat.output, Shape::Hwc(5, 5, 22));
    let summary = Branchy::summary();
    assert!(summary.contains("5x5x4 ++ 5x5x6 ++ 5x5x12 = 5x5x22"), "{summary}");
    assert!(summary.contains("5x5x12 + 5x5x12"), "{summary}");
    assert!(summary.contains("upsample (upsample 2)") && summary.contains("5*2 = 10"), "{summary}");
}

#[test]
fn blocks_save_and_load_with_their_field_names() {
    let net = network(5);
    let dir = std::env::temp_dir().join(format!("cnn-blocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("branchy.safetensors");
    net.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = file.names();
    assert!(names.contains(&"residual2_shortcut_1.running_var") && names.contains(&"residual3_0_1_0.weight"));
    let loaded = Branchy::load(&path).unwrap();
    let x = random4(&mut rng(6), (2, 10, 10, 3));
    assert_eq!(loaded.forward(x.view()).unwrap(), net.forward(x.view()).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blocks_train() {
    let mut net = network(7);
    let x = random4(&mut rng(8), (6, 10, 10, 3));
    let labels = [0, 1, 2, 3, 4, 0];
    let mut opt = cnn::optim::Adam::new(1e-2);
    let first = net.train_step(x.view(), &labels, &mut opt).unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = net.train_step(x.view(), &labels, &mut opt).unwrap();
    }
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert_eq!(<Branchy as Network>::PARAMETERS, Branchy::PARAMETERS);
}

cnn::cnn! {
    /// Branches whose last conv writes straight into its channels of the
    /// join (GEMM paths), beside one through a buffer and the identity.
    pub struct Wide {
        input 6x6x3;
        concat { conv 12 k3 p1 relu } { conv 10 k1; batchnorm } { conv 9 k3 p1 g3 } { conv 2 k1 } {} tanh;
        globalavgpool;
        dense 3;
    }
}

#[test]
fn concat_branches_written_into_their_channels_match_the_reference() {
    let mut net = Wide::with_seed(9);
    net.concat1_1_1.running_var_mut().fill(2.0);
    net.concat1_1_1.running_mean_mut().fill(0.1);
    let x = random4(&mut rng(10), (4, 6, 6, 3));
    let a = relu(conv(&net.concat1_0_0, &x));
    let b = bn(&net.concat1_1_1, &conv(&net.concat1_1_0, &x));
    let c = conv(&net.concat1_2_0, &x);
    let d = conv(&net.concat1_3_0, &x);
    let joined =
        concatenate(NdAxis(3), &[a.view(), b.view(), c.view(), d.view(), x.view()]).unwrap().mapv(f32::tanh);
    let expected =
        common::dense(common::global_avg(joined.view()).view(), net.dense1.weight(), net.dense1.bias());
    for kernels in cnn::__private::Kernels::ALL {
        net.__cnn_set_kernels(kernels);
        assert_close(&net.forward(x.view()).unwrap(), &expected, 1e-4, &format!("{kernels:?}"));
    }
}

cnn::cnn! {
    /// Branches of 3x3 convs with 16 channels or more, which Winograd's
    /// F(2x2, 3x3) writes straight into their channels of the join, with
    /// a relu and a batchnorm in their epilogues.
    pub struct WideWinograd {
        input 7x6x16;
        concat { conv 16 k3 p1 relu } { conv 20 k3 p1; batchnorm } {} tanh;
        globalavgpool;
        dense 3;
    }
}

#[test]
fn winograd_branches_written_into_their_channels_match_the_reference() {
    let mut net = WideWinograd::with_seed(11);
    net.concat1_1_1.running_var_mut().fill(2.0);
    net.concat1_1_1.running_mean_mut().fill(0.1);
    let x = random4(&mut rng(12), (3, 7, 6, 16));
    let a = relu(conv(&net.concat1_0_0, &x));
    let b = bn(&net.concat1_1_1, &conv(&net.concat1_1_0, &x));
    let joined = concatenate(NdAxis(3), &[a.view(), b.view(), x.view()]).unwrap().mapv(f32::tanh);
    let expected =
        common::dense(common::global_avg(joined.view()).view(), net.dense1.weight(), net.dense1.bias());
    for kernels in cnn::__private::Kernels::ALL {
        net.__cnn_set_kernels(kernels);
        assert_close(&net.forward(x.view()).unwrap(), &expected, 1e-4, &format!("{kernels:?}"));
    }
}
