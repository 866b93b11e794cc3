//! Every layer against the nested-loop reference, on random shapes.

mod common;

use cnn::layers::{Activation, AvgPool2d, Axis, BatchNorm, Conv2d, ConvGeometry, Dense, MaxPool2d};
use cnn::ndarray::{Array1, Array2};
use common::{Win, assert_close, random4, rng};
use rand::Rng;

fn win(axis: &Axis) -> Win {
    Win {
        n: axis.input,
        k: axis.kernel,
        s: axis.stride,
        p: axis.pad_before,
        d: axis.dilation,
        out: axis.output,
    }
}

fn check_conv(geometry: ConvGeometry, batch: usize, bias: bool, seed: u64) {
    let mut r = rng(seed);
    let conv = Conv2d::new(geometry, bias, &mut cnn::init::rng(seed));
    let (h, w) = (geometry.height, geometry.width);
    let x = random4(&mut r, (batch, h.input, w.input, geometry.in_channels));
    let expected = common::conv(x.view(), conv.weight(), conv.bias(), win(&h), win(&w), geometry.groups);
    // Every variant of the kernels some CPU runs; outputs start as NaN.
    for kernels in cnn::__private::Kernels::ALL {
        let got = conv.forward_with(x.view(), kernels).unwrap();
        assert_close(&got, &expected, 1e-4, &format!("{kernels:?} {geometry:?}"));
    }
}

#[test]
fn conv_matches_reference_on_random_shapes() {
    let mut r = rng(1);
    let mut checked = 0;
    while checked < 300 {
        let groups = r.random_range(1..=3);
        // Up to 20 output channels a group: the direct path (up to 8), and
        // im2col + GEMM with one and two vectors of channels.
        let (cin, cout) = (groups * r.random_range(1..=4), groups * r.random_range(1..=20));
        // A third unpadded: the GEMM then reads patches from the input in place.
        let padded = r.random_bool(0.67);
        let axis = |r: &mut rand_chacha::ChaCha8Rng| {
            let (k, d) = (r.random_range(1..=4), r.random_range(1..=2));
            let (pb, pa) = if padded { (r.random_range(0..=2), r.random_range(0..=2)) } else { (0, 0) };
            // Up to 20 wide: rows of more than one vector of 16 pixels.
            common::axis(r.random_range(1..=20), k, r.random_range(1..=3), pb, pa, d, false)
        };
        let (height, width) = (axis(&mut r), axis(&mut r));
        if height.output == 0 || width.output == 0 {
            continue;
        }
        let geometry = ConvGeometry { height, width, in_channels: cin, out_channels: cout, groups };
        check_conv(geometry, r.random_range(1..=3), r.random_bool(0.7), checked);
        checked += 1;
    }
}

/// Up to eight output channels in one group: with AVX-512, two output
/// pixels a vector; rows of one vector and of several, tiles that start
/// inside a row.
#[test]
fn few_channel_convs_match_reference() {
    let mut r = rng(3);
    let mut checked = 0;
    while checked < 60 {
        let axis = |r: &mut rand_chacha::ChaCha8Rng| {
            let (k, d) = (r.random_range(1..=5), r.random_range(1..=2));
            let (pb, pa) = (r.random_range(0..=2), r.random_range(0..=2));
            common::axis(r.random_range(1..=40), k, r.random_range(1..=3), pb, pa, d, false)
        };
        let (height, width) = (axis(&mut r), axis(&mut r));
        if height.output == 0 || width.output == 0 {
            continue;
        }
        let cin = r.random_range(1..=4);
        let cout = if r.random_bool(0.5) { 8 } else { r.random_range(1..=7) };
        let geometry = ConvGeometry { height, width, in_channels: cin, out_channels: cout, groups: 1 };
        // Up to 24 images of up to 40x40: several tiles for the larger ones.
        check_conv(geometry, r.random_range(1..=24), r.random_bool(0.7), 1000 + checked);
        checked += 1;
    }
}

/// 3x3 convs of stride 1 and 16 channels or more, which take Winograd's
/// F(2x2, 3x3): odd and even sizes (tiles cut by the output's edge),
/// padding up to two on each side (windows of zeros), channels around
/// each vector count, on one thread (a batch's tiles at once) and on two
/// (an image, or bands of a single image's rows of tiles, a thread at a
/// time).
#[test]
fn winograd_convs_match_reference() {
    let mut r = rng(4);
    for checked in 0..40u64 {
        let axis = |r: &mut rand_chacha::ChaCha8Rng| {
            let (pb, pa) = (r.random_range(0..=2), r.random_range(0..=2));
            common::axis(r.random_range(1..=30), 3, 1, pb, pa, 1, false)
        };
        let (height, width) = (axis(&mut r), axis(&mut r));
        let (cin, cout) = (r.random_range(16..=40), r.random_range(16..=70));
        let geometry = ConvGeometry { height, width, in_channels: cin, out_channels: cout, groups: 1 };
        let threads = 1 + checked as usize % 2;
        common::on_threads(threads, || {
            check_conv(geometry, r.random_range(1..=3), r.random_bool(0.7), 2000 + checked)
        });
    }
}

#[test]
fn conv_spans_several_tiles_and_the_pointwise_path() {
    // 64 channels, 3x3: 576-value patches, ~113 rows a tile, 2*18*18 rows in all.
    let big = ConvGeometry {
        height: common::axis(18, 3, 1, 1, 1, 1, false),
        width: common::axis(18, 3, 1, 1, 1, 1, false),
        in_channels: 64,
        out_channels: 24,
        groups: 1,
    };
    check_conv(big, 2, true, 7);
    let pointwise = ConvGeometry {
        height: common::axis(9, 1, 1, 0, 0, 1, false),
        width: common::axis(7, 1, 1, 0, 0, 1, false),
        in_channels: 13,
        out_channels: 5,
        groups: 1,
    };
    check_conv(pointwise, 3, true, 8);
    // A depthwise conv: one group per channel.
    let depthwise = ConvGeometry { groups: 8, in_channels: 8, out_channels: 16, ..big };
    check_conv(depthwise, 1, false, 9);
    // The direct conv on rows of one vector, two output rows at a time:
    // 16 images of 14x14 outputs are 3,136 pixels, more than a tile, whose
    // edge then falls inside an output row, which goes alone.
    let narrow = ConvGeometry {
        height: common::axis(28, 5, 2, 2, 2, 1, false),
        width: common::axis(28, 5, 2, 2, 2, 1, false),
        in_channels: 1,
        out_channels: 8,
        groups: 1,
    };
    check_conv(narrow, 16, true, 10);
}

/// The direct conv holds a small image's rows whole, and a larger one's as
/// a ring, each row twice: both, by the two-pixel kernel (one group) and
/// the other (groups), strided and dilated, on one thread and two.
#[test]
fn direct_convs_of_small_and_large_images_match_reference() {
    for (size, cin, groups, cout, seed) in
        [(12, 1, 1, 8, 20), (64, 3, 1, 6, 21), (10, 4, 2, 4, 22), (50, 4, 4, 8, 23)]
    {
        // Rounded up, the last window of an odd size reads past the padding.
        for (stride, dilation, ceil) in [(1, 1, false), (2, 1, false), (3, 2, false), (2, 1, true)] {
            let axis = common::axis(size + ceil as usize, 3, stride, 1, 0, dilation, ceil);
            let geometry =
                ConvGeometry { height: axis, width: axis, in_channels: cin, out_channels: cout, groups };
            for threads in [1, 2] {
                common::on_threads(threads, || check_conv(geometry, 3, true, seed));
            }
        }
    }
}

#[test]
fn pools_match_reference_with_padding_floor_and_ceil() {
    let mut r = rng(2);
    let mut checked = 0;
    while checked < 300 {
        let axis = |r: &mut rand_chacha::ChaCha8Rng, ceil| {
            let k = r.random_range(1..=4);
            let p = r.random_range(0..=k / 2);
            common::axis(r.random_range(1..=12), k, r.random_range(1..=3), p, p, 1, ceil)
        };
        let ceil = r.random_bool(0.5);
        let (height, width) = (axis(&mut r, ceil), axis(&mut r, ceil));
        if height.output == 0 || width.output == 0 {
            continue;
        }
        // Few channels, and enough for each pixel to combine its cells alone.
        let c = if r.random_bool(0.3) { r.random_range(32..=40) } else { r.random_range(1..=5) };
        let n = r.random_range(1..=2);
        let x = random4(&mut r, (n, height.input, width.input, c));
        let (h, w) = (win(&height), win(&width));
        let what = format!("{height:?} {width:?}");
        assert_close(
            &MaxPool2d::new(height, width).forward(x.view()).unwrap(),
            &common::max_pool(x.view(), h, w),
            0.0,
            &what,
        );
        assert_close(
            &AvgPool2d::new(height, width).forward(x.view()).unwrap(),
            &common::avg_pool(x.view(), h, w),
            1e-5,
            &what,
        );
        checked += 1;
    }
}

#[test]
fn pools_of_two_rows_over_whole_vectors_match_reference() {
    // `maxpool 2` over channels a multiple of the vector width reads each
    // window's two rows a vector at a time: odd and even sizes, padding,
    // ceil, and windows three columns wide beside them.
    let mut r = rng(12);
    for input in 2..=9 {
        for (pad, ceil, kw) in [(0, false, 2), (0, true, 2), (1, false, 2), (1, true, 2), (0, false, 3)] {
            let height = common::axis(input, 2, 2, pad, pad, 1, ceil);
            let width = common::axis(input + 1, kw, 2, pad, pad, 1, ceil);
            for c in [16, 32, 48, 24] {
                let x = random4(&mut r, (2, height.input, width.input, c));
                let (h, w) = (win(&height), win(&width));
                let what = format!("{height:?} {width:?} {c}");
                let pooled = MaxPool2d::new(height, width).forward(x.view()).unwrap();
                assert_close(&pooled, &common::max_pool(x.view(), h, w), 0.0, &what);
                let averaged = AvgPool2d::new(height, width).forward(x.view()).unwrap();
                assert_close(&averaged, &common::avg_pool(x.view(), h, w), 1e-5, &what);
            }
        }
    }
}

#[test]
fn avg_pool_divisor_follows_pytorch_with_ceil() {
    // nn.AvgPool2d(2, 2, padding=1, ceil_mode=True) on a 1x4 row of ones
    // gives [0.5, 1, 0.5]: the windows at the ends hold one padded cell.
    let ones = cnn::ndarray::Array4::<f32>::ones((1, 1, 4, 1));
    let pool = AvgPool2d::new(common::axis(1, 1, 1, 0, 0, 1, true), common::axis(4, 2, 2, 1, 1, 1, true));
    let y = pool.forward(ones.view()).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), [0.5, 1.0, 0.5]);
    // nn.AvgPool2d(2, 2, ceil_mode=True) on [1, 2, 3]: the last window hangs
    // past the input, with no padding to count: [1.5, 3].
    let row = cnn::ndarray::Array4::from_shape_vec((1, 1, 3, 1), vec![1.0, 2.0, 3.0]).unwrap();
    let pool = AvgPool2d::new(common::axis(1, 1, 1, 0, 0, 1, true), common::axis(3, 2, 2, 0, 0, 1, true));
    assert_eq!(pool.forward(row.view()).unwrap().iter().copied().collect::<Vec<_>>(), [1.5, 3.0]);
}

#[test]
fn dense_matches_reference() {
    let mut r = rng(3);
    for case in 0..50 {
        let (n, inputs, outputs) = (r.random_range(1..=9), r.random_range(1..=70), r.random_range(1..=20));
        let dense = Dense::new(inputs, outputs, case % 3 != 0, &mut cnn::init::rng(case));
        let x = Array2::from_shape_simple_fn((n, inputs), || r.random_range(-1.0..1.0));
        let expected = common::dense(x.view(), dense.weight(), dense.bias());
        assert_close(&dense.forward(x.view()).unwrap(), &expected, 1e-4, "dense");
    }
}

#[test]
fn batchnorm_and_activations_match_reference() {
    let mut r = rng(4);
    let x = random4(&mut r, (2, 3, 4, 5)) * 4.0;
    let mut bn = BatchNorm::new(5, 1e-3);
    bn.set_weight(Array1::from_shape_simple_fn(5, || r.random_range(0.5..1.5))).unwrap();
    bn.set_bias(Array1::from_shape_simple_fn(5, || r.random_range(-1.0..1.0))).unwrap();
    bn.set_running_mean(Array1::from_shape_simple_fn(5, || r.random_range(-1.0..1.0))).unwrap();
    bn.set_running_var(Array1::from_shape_simple_fn(5, || r.random_range(0.1..2.0))).unwrap();
    let expected = common::batchnorm(
        x.as_slice().unwrap(),
        5,
        &bn.weight(),
        &bn.bias(),
        &bn.running_mean(),
        &bn.running_var(),
        1e-3,
    );
    let actual = bn.forward(x.clone()).unwrap();
    assert_close(&actual, &x.shape_owned(expected), 1e-5, "batchnorm");

    type Reference = fn(f32) -> f32;
    let cases: [(Activation, Reference); 4] = [
        (Activation::Relu, |v| v.max(0.0)),
        (Activation::Tanh, common::tanh),
        (Activation::Sigmoid, common::sigmoid),
        (Activation::LeakyRelu(0.2), |v| if v < 0.0 { 0.2 * v } else { v }),
    ];
    for (act, reference) in cases {
        assert_close(&cnn::layers::activate(act, x.clone()), &x.mapv(reference), 1e-6, &format!("{act:?}"));
    }
    let flat = Array2::from_shape_simple_fn((4, 7), || r.random_range(-30.0..30.0));
    assert_close(
        &cnn::layers::activate(Activation::Softmax, flat.clone()),
        &common::softmax_rows(&flat),
        1e-6,
        "softmax",
    );
}

trait ShapeOwned {
    fn shape_owned(&self, data: Vec<f32>) -> cnn::ndarray::Array4<f32>;
}

impl ShapeOwned for cnn::ndarray::Array4<f32> {
    fn shape_owned(&self, data: Vec<f32>) -> cnn::ndarray::Array4<f32> {
        cnn::ndarray::Array4::from_shape_vec(self.raw_dim(), data).unwrap()
    }
}
