//! The generated API: constants, forward, predict, seeds, summary, errors,
//! and whole networks against the nested-loop reference.

mod common;

#[path = "../examples/seeds/nets.rs"]
mod nets;

use cnn::ndarray::{Array2, Array4, Axis as NdAxis, s};
use cnn::{Network, Output, Shape};
use common::{Win, assert_close, random4, rng};
use nets::{Cifar3Block, FastaiMnist, LeNet5, PytorchQuestion, TfCifar};
use rand::Rng;

cnn::cnn! {
    /// VGG16 (Simonyan & Zisserman 2014), as torchvision builds it.
    pub struct Vgg16 {
        input 224x224x3;
        conv 64 k3 p1 relu; conv 64 k3 p1 relu; maxpool 2;
        conv 128 k3 p1 relu; conv 128 k3 p1 relu; maxpool 2;
        conv 256 k3 p1 relu; conv 256 k3 p1 relu; conv 256 k3 p1 relu; maxpool 2;
        conv 512 k3 p1 relu; conv 512 k3 p1 relu; conv 512 k3 p1 relu; maxpool 2;
        conv 512 k3 p1 relu; conv 512 k3 p1 relu; conv 512 k3 p1 relu; maxpool 2;
        flatten;
        dense 512*7*7 -> 4096 relu; dropout 0.5;
        dense 4096 relu; dropout 0.5;
        dense 1000;
    }
}

#[test]
fn parameter_counts_match_published_models() {
    // torchvision.models.vgg16(): 138,357,544 parameters.
    assert_eq!(Vgg16::PARAMETERS, 138_357_544);
    // LeNet-5 with these layers in PyTorch: 61,706.
    assert_eq!(LeNet5::PARAMETERS, 61_706);
    // TensorFlow's CIFAR-10 tutorial prints "Total params: 122,570".
    assert_eq!(TfCifar::PARAMETERS, 122_570);
    // Batchnorm counts weight and bias, not the running statistics.
    assert_eq!(Cifar3Block::PARAMETERS, 896 + 64 + 18_496 + 128 + 36_928 + 128 + 10_250);
    assert_eq!(Vgg16::OUTPUT, Shape::Flat(1000));
}

#[test]
fn layers_describe_every_layer_with_fused_activations() {
    let layers = PytorchQuestion::LAYERS;
    let described: Vec<(&str, &str, Shape, usize)> =
        layers.iter().map(|l| (l.name, l.source, l.output, l.params)).collect();
    assert_eq!(
        described,
        [
            ("conv1", "conv 32 k7 s2 floor relu", Shape::Hwc(13, 13, 32), 32 * 3 * 7 * 7 + 32),
            ("relu", "relu", Shape::Hwc(13, 13, 32), 0),
            ("flatten", "flatten", Shape::Flat(5408), 0),
            ("dense1", "dense 5408 -> 10", Shape::Flat(10), 5408 * 10 + 10),
        ]
    );
    assert_eq!(<LeNet5 as Network>::LAYERS.len(), 12);
    assert_eq!(FastaiMnist::LAYERS[6].output, Shape::Hwc(2, 2, 32));
}

/// The runtime's output shape is the one the macro worked out.
fn output_shape_matches<N: Network>(batch: usize) {
    let Shape::Hwc(h, w, c) = N::INPUT else { panic!("HxWxC input") };
    let y = N::new().forward(Array4::zeros((batch, h, w, c)).view()).unwrap().into_dyn();
    let expected = match N::OUTPUT {
        Shape::Hwc(h, w, c) => vec![batch, h, w, c],
        Shape::Flat(n) => vec![batch, n],
    };
    assert_eq!(y.shape(), &expected[..]);
}

#[test]
fn every_example_network_gives_its_output_shape() {
    output_shape_matches::<LeNet5>(3);
    output_shape_matches::<TfCifar>(2);
    output_shape_matches::<Cifar3Block>(2);
    output_shape_matches::<FastaiMnist>(5);
    output_shape_matches::<PytorchQuestion>(1);
    cnn::cnn! {
        struct Spatial { input 12x10x3; conv 4 k3 s2 p1 floor; maxpool 3 s2 p1 ceil; }
    }
    output_shape_matches::<Spatial>(2);
    // h: (12 + 2 - 3) / 2 + 1 = 6.5 -> 6, then (6 + 2 - 3) / 2 + 1 = 3.5 -> 4 (ceil);
    // w: (10 + 2 - 3) / 2 + 1 = 5.5 -> 5, then (5 + 2 - 3) / 2 + 1 = 3.
    assert_eq!(Spatial::OUTPUT, Shape::Hwc(4, 3, 4));
}

#[test]
fn a_wrong_input_shape_is_an_error_naming_both_shapes() {
    let net = LeNet5::new();
    let err = net.forward(Array4::zeros((2, 28, 28, 1)).view()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("32x32x1") && message.contains("[2, 28, 28, 1]"), "{message}");
    assert!(matches!(err, cnn::Error::InputShape { expected: Shape::Hwc(32, 32, 1), .. }));
    // An empty batch is fine.
    assert_eq!(net.forward(Array4::zeros((0, 32, 32, 1)).view()).unwrap().dim(), (0, 10));
}

#[test]
fn seeds_are_deterministic_and_init_follows_pytorch_bounds() {
    let (a, b, c) = (LeNet5::new(), LeNet5::with_seed(0), LeNet5::with_seed(1));
    assert_eq!(a.conv1.weight(), b.conv1.weight());
    assert_eq!(a.dense3.bias(), b.dense3.bias());
    assert_ne!(a.conv1.weight(), c.conv1.weight());
    assert_eq!(<LeNet5 as Network>::new().dense1.weight(), LeNet5::default().dense1.weight());
    // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): fan_in = 1*5*5 for conv1, 400 for dense1.
    let within = |values: &[f32], fan_in: f32| values.iter().all(|v| v.abs() <= 1.0 / fan_in.sqrt());
    assert!(within(a.conv1.weight().as_slice().unwrap(), 25.0));
    assert!(within(a.dense1.weight().as_slice().unwrap(), 400.0));
    assert!(!within(a.conv1.weight().as_slice().unwrap(), 100.0), "spread over the whole range");
    let bn = Cifar3Block::new().bn2;
    assert!(bn.weight().iter().all(|&v| v == 1.0) && bn.running_var().iter().all(|&v| v == 1.0));
    assert!(bn.bias().iter().all(|&v| v == 0.0) && bn.running_mean().iter().all(|&v| v == 0.0));
}

#[test]
fn predict_is_forward_on_one_image() {
    let net = TfCifar::with_seed(3);
    let mut r = rng(5);
    let x = random4(&mut r, (1, 32, 32, 3));
    let image: &[f32; 32 * 32 * 3] = x.as_slice().unwrap().try_into().unwrap();
    let y: [f32; 10] = net.predict(image);
    assert_eq!(y.to_vec(), net.forward(x.view()).unwrap().row(0).to_vec());
}

#[test]
fn summary_shows_shapes_arithmetic_and_totals() {
    let summary = PytorchQuestion::summary();
    assert!(summary.contains("(32 - 7) / 2 + 1 = 13.5 -> 13 (floor)"), "{summary}");
    assert!(summary.contains("13x13x32") && summary.contains("5408"), "{summary}");
    assert!(summary.contains("parameters: 58,826"), "{summary}");
    assert!(FastaiMnist::summary().contains("(28 + 2*2 - 5) / 2 + 1 = 14.5 -> 14 (floor)"));
    // An image taller than wide: both axes' arithmetic, though the layer's
    // options are the same for both.
    cnn::cnn! {
        struct Tall { input 12x10x3; conv 4 k3 s2 p1 floor; }
    }
    let summary = Tall::summary();
    let both = "h: (12 + 2*1 - 3) / 2 + 1 = 6.5 -> 6 (floor); w: (10 + 2*1 - 3) / 2 + 1 = 5.5 -> 5 (floor)";
    assert!(summary.contains(both), "{summary}");
}

/// `net.forward(x)` against `expected` with every variant of the kernels:
/// the fastest, AVX2, the baseline and the portable im2col + matrixmultiply.
macro_rules! assert_both_kernels {
    ($net:ident, $x:ident, $expected:ident, $what:expr) => {
        for kernels in cnn::__private::Kernels::ALL {
            $net.__cnn_set_kernels(kernels);
            let what = format!("{} ({kernels:?})", $what);
            // Memory freed full of NaN, which the output likely reuses: a
            // value the pass does not write shows.
            drop(std::hint::black_box(vec![f32::NAN; $expected.len()]));
            assert_close(&$net.forward($x.view()).unwrap(), &$expected, 1e-4, &what);
        }
    };
}

fn conv_win(layer: &cnn::layers::Conv2d) -> (Win, Win) {
    let g = layer.geometry();
    let win = |a: &cnn::layers::Axis| Win {
        n: a.input,
        k: a.kernel,
        s: a.stride,
        p: a.pad_before,
        d: a.dilation,
        out: a.output,
    };
    (win(&g.height), win(&g.width))
}

fn ref_conv(layer: &cnn::layers::Conv2d, x: &Array4<f32>) -> Array4<f32> {
    let (h, w) = conv_win(layer);
    common::conv(x.view(), layer.weight(), layer.bias(), h, w, layer.geometry().groups)
}

fn ref_dense(layer: &cnn::layers::Dense, x: &Array2<f32>) -> Array2<f32> {
    common::dense(x.view(), layer.weight(), layer.bias())
}

fn ref_batchnorm(bn: &cnn::layers::BatchNorm, y: &Array4<f32>) -> Array4<f32> {
    let (mean, var) = (bn.running_mean(), bn.running_var());
    let normed =
        common::batchnorm(y.as_slice().unwrap(), y.dim().3, &bn.weight(), &bn.bias(), &mean, &var, 1e-5);
    Array4::from_shape_vec(y.raw_dim(), normed).unwrap()
}

fn pool2(x: &Array4<f32>, k: usize, floor_or_exact: bool) -> (Win, Win) {
    let (_, h, w, _) = x.dim();
    let _ = floor_or_exact;
    (Win { n: h, k, s: k, p: 0, d: 1, out: h / k }, Win { n: w, k, s: k, p: 0, d: 1, out: w / k })
}

#[test]
fn lenet5_matches_reference() {
    let net = LeNet5::with_seed(11);
    let x = random4(&mut rng(6), (4, 32, 32, 1));
    let t = ref_conv(&net.conv1, &x).mapv(common::tanh);
    let (h, w) = pool2(&t, 2, true);
    let t = common::avg_pool(t.view(), h, w);
    let t = ref_conv(&net.conv2, &t).mapv(common::tanh);
    let (h, w) = pool2(&t, 2, true);
    let t = common::flatten(common::avg_pool(t.view(), h, w).view());
    let t = ref_dense(&net.dense1, &t).mapv(common::tanh);
    let t = ref_dense(&net.dense2, &t).mapv(common::tanh);
    let expected = ref_dense(&net.dense3, &t);
    assert_both_kernels!(net, x, expected, "LeNet-5");
}

#[test]
fn tf_cifar_with_its_floor_pool_matches_reference() {
    let net = TfCifar::with_seed(12);
    let x = random4(&mut rng(7), (3, 32, 32, 3));
    let relu = |v: f32| v.max(0.0);
    let t = ref_conv(&net.conv1, &x).mapv(relu);
    let (h, w) = pool2(&t, 2, true);
    let t = common::max_pool(t.view(), h, w);
    let t = ref_conv(&net.conv2, &t).mapv(relu);
    let (h, w) = pool2(&t, 2, true); // 13 / 2 rounds down: floor
    let t = common::max_pool(t.view(), h, w);
    let t = common::flatten(ref_conv(&net.conv3, &t).mapv(relu).view());
    let t = ref_dense(&net.dense1, &t).mapv(relu);
    let expected = ref_dense(&net.dense2, &t);
    assert_both_kernels!(net, x, expected, "TF CIFAR");
}

cnn::cnn! {
    /// 3x3 convs of 16 channels or more with `maxpool 2` right after,
    /// which the pass pools in Winograd's tiles: ceil and floor over odd
    /// and even sizes, a batchnorm between, and a tanh, which keeps the
    /// two apart (the max of a tanh is not the tanh of the max for every
    /// activation, so none but those the kernels take is pooled there).
    pub struct PooledConvs {
        input 13x11x16;
        conv 16 k3 p1 relu; maxpool 2 ceil;
        conv 24 k3 p1; batchnorm; relu; maxpool 2 floor;
        conv 16 k3 p1 tanh; maxpool 2 ceil;
        flatten;
        dense 4;
    }
    /// A pooled conv whose pool is the last layer, into the fresh output.
    pub struct PooledLast {
        input 9x8x16;
        conv 20 k3 relu; maxpool 2 floor;
    }
    /// A pooled conv in a concat's branch, and at the end of a
    /// residual's body, where it adds the shortcut to the pool's pixels.
    pub struct PooledBranch {
        input 10x8x16;
        concat { conv 16 k3 p1 relu; maxpool 2 } { maxpool 2 };
        residual { conv 32 k3 p1 relu; maxpool 2 ceil } shortcut { conv 32 k1 s2 floor } relu;
        globalavgpool;
        dense 3;
    }
}

fn max_pool2(x: &Array4<f32>, ceil: bool) -> Array4<f32> {
    let (_, h, w, _) = x.dim();
    let out = |n: usize| if ceil { n.div_ceil(2) } else { n / 2 };
    let (h, w) = (
        Win { n: h, k: 2, s: 2, p: 0, d: 1, out: out(h) },
        Win { n: w, k: 2, s: 2, p: 0, d: 1, out: out(w) },
    );
    common::max_pool(x.view(), h, w)
}

#[test]
fn convs_pooled_in_their_tiles_match_reference() {
    let relu = |v: f32| v.max(0.0);
    let mut net = PooledConvs::with_seed(15);
    net.bn1.set_running_mean(cnn::ndarray::Array1::from_elem(24, 0.1)).unwrap();
    net.bn1.set_running_var(cnn::ndarray::Array1::from_elem(24, 2.0)).unwrap();
    let x = random4(&mut rng(16), (3, 13, 11, 16));
    let t = max_pool2(&ref_conv(&net.conv1, &x).mapv(relu), true);
    let t = max_pool2(&ref_batchnorm(&net.bn1, &ref_conv(&net.conv2, &t)).mapv(relu), false);
    let t = max_pool2(&ref_conv(&net.conv3, &t).mapv(common::tanh), true);
    let expected = ref_dense(&net.dense1, &common::flatten(t.view()));
    assert_both_kernels!(net, x, expected, "pooled convs");

    let net = PooledLast::with_seed(17);
    let x = random4(&mut rng(18), (2, 9, 8, 16));
    let expected = max_pool2(&ref_conv(&net.conv1, &x).mapv(relu), false);
    assert_both_kernels!(net, x, expected, "pooled last");

    let net = PooledBranch::with_seed(19);
    let x = random4(&mut rng(20), (2, 10, 8, 16));
    let a = max_pool2(&ref_conv(&net.concat1_0_0, &x).mapv(relu), false);
    let joined = cnn::ndarray::concatenate(NdAxis(3), &[a.view(), max_pool2(&x, false).view()]).unwrap();
    let body = max_pool2(&ref_conv(&net.residual1_0, &joined).mapv(relu), true);
    let summed = (body + ref_conv(&net.residual1_shortcut_0, &joined)).mapv(relu);
    let expected = ref_dense(&net.dense1, &common::global_avg(summed.view()));
    assert_both_kernels!(net, x, expected, "pooled branch");
    // One image: the threads share its rows of tiles.
    for kernels in [cnn::__private::Kernels::Fastest, cnn::__private::Kernels::Avx2] {
        net.__cnn_set_kernels(kernels);
        let one = net.forward(x.slice(s![..1, .., .., ..])).unwrap();
        assert_close(
            &one,
            &expected.slice(s![..1, ..]).to_owned(),
            1e-4,
            &format!("one image ({kernels:?})"),
        );
    }
}

#[test]
fn cifar_3block_with_batchnorm_matches_reference() {
    let mut net = Cifar3Block::with_seed(13);
    let mut r = rng(8);
    for bn in [&mut net.bn1, &mut net.bn2, &mut net.bn3] {
        let c = bn.weight().len();
        bn.set_weight(cnn::ndarray::Array1::from_shape_simple_fn(c, || r.random_range(0.5..1.5))).unwrap();
        bn.set_bias(cnn::ndarray::Array1::from_shape_simple_fn(c, || r.random_range(-0.5..0.5))).unwrap();
        bn.set_running_mean(cnn::ndarray::Array1::from_shape_simple_fn(c, || r.random_range(-0.2..0.2)))
            .unwrap();
        bn.set_running_var(cnn::ndarray::Array1::from_shape_simple_fn(c, || r.random_range(0.5..2.0)))
            .unwrap();
    }
    let x = random4(&mut r, (2, 32, 32, 3));
    let mut t = x.clone();
    for (conv, bn) in [(&net.conv1, &net.bn1), (&net.conv2, &net.bn2), (&net.conv3, &net.bn3)] {
        let y = ref_batchnorm(bn, &ref_conv(conv, &t)).mapv(|v| v.max(0.0));
        let (h, w) = pool2(&y, 2, true);
        t = common::max_pool(y.view(), h, w);
    }
    let expected = ref_dense(&net.dense1, &common::flatten(t.view()));
    assert_both_kernels!(net, x, expected, "3-block CIFAR");
}

#[test]
fn fastai_mnist_with_global_pool_matches_reference() {
    let net = FastaiMnist::with_seed(14);
    let x = random4(&mut rng(9), (3, 28, 28, 1));
    let mut t = x.clone();
    for conv in [&net.conv1, &net.conv2, &net.conv3, &net.conv4] {
        t = ref_conv(conv, &t).mapv(|v| v.max(0.0));
    }
    let expected = ref_dense(&net.dense1, &common::global_avg(t.view()));
    assert_both_kernels!(net, x, expected, "fastai MNIST");
}

#[test]
fn softmax_output_and_batch_independence() {
    cnn::cnn! {
        struct Probabilities { input 9x9x2; conv 4 k3 same sigmoid; globalmaxpool; dense 5 softmax; }
    }
    let net = Probabilities::new();
    let x = random4(&mut rng(10), (6, 9, 9, 2));
    let y = net.forward(x.view()).unwrap();
    for row in y.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
    // Each image's output does not depend on the rest of the batch.
    let alone = net.forward(x.slice(s![2..3, .., .., ..])).unwrap();
    assert_close(
        &alone.index_axis(NdAxis(0), 0).to_owned(),
        &y.index_axis(NdAxis(0), 2).to_owned(),
        1e-6,
        "batch",
    );
}

/// A network whose last layer is a conv writes the output's values tile by
/// tile into memory nothing has written: each must come out right, on the
/// path where a batch shares each layer's tiles (one image) and where the
/// threads take whole chunks of images.
#[test]
fn networks_that_end_in_a_conv_match_reference() {
    cnn::cnn! {
        struct EndsInGemmConv { input 20x20x3; c1: conv 16 k3 p1 relu; c2: conv 24 k3 p1; bn: batchnorm; relu; }
        struct EndsInDirectConv { input 20x20x3; c1: conv 16 k3 relu; c2: conv 6 k3 p1 relu; flatten; }
        struct BatchnormAfterTheConvsRelu { input 12x12x2; c1: conv 5 k3 relu; bn: batchnorm; }
        struct EightChannels {
            input 20x20x3; c1: conv 8 k3 s2 p1 floor relu6; c2: conv 8 k3 p1; bn: batchnorm; tanh; flatten;
        }
    }
    let relu = |v: f32| v.max(0.0);
    let mut r = rng(11);
    for batch in [1, 2, 7, 40] {
        let x = random4(&mut r, (batch, 20, 20, 3));
        let mut net = EndsInGemmConv::with_seed(batch as u64);
        net.bn
            .set_running_mean(cnn::ndarray::Array1::from_shape_simple_fn(24, || r.random_range(-0.2..0.2)))
            .unwrap();
        let t = ref_conv(&net.c1, &x).mapv(relu);
        let expected = ref_batchnorm(&net.bn, &ref_conv(&net.c2, &t)).mapv(relu);
        assert_both_kernels!(net, x, expected, format!("GEMM conv last, batch {batch}"));

        let net = EndsInDirectConv::with_seed(batch as u64);
        let t = ref_conv(&net.c1, &x).mapv(relu);
        let expected = common::flatten(ref_conv(&net.c2, &t).mapv(relu).view());
        assert_both_kernels!(net, x, expected, format!("direct conv last, batch {batch}"));

        let mut net = EightChannels::with_seed(batch as u64);
        net.bn
            .set_running_var(cnn::ndarray::Array1::from_shape_simple_fn(8, || r.random_range(0.5..2.0)))
            .unwrap();
        let t = ref_conv(&net.c1, &x).mapv(|v| v.clamp(0.0, 6.0));
        let expected = common::flatten(ref_batchnorm(&net.bn, &ref_conv(&net.c2, &t)).mapv(f32::tanh).view());
        assert_both_kernels!(net, x, expected, format!("eight-channel convs, batch {batch}"));

        let x = random4(&mut r, (batch, 12, 12, 2));
        let mut net = BatchnormAfterTheConvsRelu::with_seed(batch as u64);
        net.bn
            .set_running_var(cnn::ndarray::Array1::from_shape_simple_fn(5, || r.random_range(0.5..2.0)))
            .unwrap();
        let expected = ref_batchnorm(&net.bn, &ref_conv(&net.c1, &x).mapv(relu));
        assert_both_kernels!(net, x, expected, format!("batchnorm after the last conv, batch {batch}"));
    }
}
