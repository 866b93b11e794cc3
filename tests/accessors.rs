//! Layer tensors behind accessors: values change, shapes cannot, and what a
//! pass prepares from them (batchnorm folded into the conv before it) is
//! always the current values. Labels that are raw or non-ASCII identifiers,
//! and doc comments on layers.

mod common;

use cnn::ndarray::{Array1, Array2, Array4};
use cnn::{Error, Network, Shape};
use common::{Win, assert_close, random4, rng};
use rand::Rng;

cnn::cnn! {
    /// A conv whose batchnorm and activation run in its epilogue.
    pub struct Folded {
        input 9x9x3;
        conv 12 k3 s2;
        batchnorm;
        relu;
        flatten;
        dense 10;
    }
}

fn win(a: &cnn::layers::Axis) -> Win {
    Win { n: a.input, k: a.kernel, s: a.stride, p: a.pad_before, d: a.dilation, out: a.output }
}

/// `Folded` by nested loops, from the tensors as they are now.
fn reference(net: &Folded, x: &Array4<f32>) -> Array2<f32> {
    let g = net.conv1.geometry();
    let conv = common::conv(x.view(), net.conv1.weight(), net.conv1.bias(), win(&g.height), win(&g.width), 1);
    let bn = &net.bn1;
    let normed = common::batchnorm(
        conv.as_slice().unwrap(),
        12,
        &bn.weight(),
        &bn.bias(),
        &bn.running_mean(),
        &bn.running_var(),
        bn.eps(),
    );
    let relu = Array4::from_shape_vec(conv.dim(), normed).unwrap().mapv(|v| v.max(0.0));
    common::dense(common::flatten(relu.view()).view(), net.dense1.weight(), net.dense1.bias())
}

#[test]
fn changes_through_the_accessors_reach_the_next_pass() {
    let mut net = Folded::with_seed(3);
    let mut r = rng(3);
    let x = random4(&mut r, (5, 9, 9, 3));
    // A first pass, so that whatever it prepares exists before the change.
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net, &x), 1e-4, "before");

    net.conv1.weight_mut().mapv_inplace(|v| 2.0 * v - 0.1);
    net.conv1.bias_mut().unwrap().fill(0.25);
    net.bn1.running_mean_mut().mapv_inplace(|_| r.random_range(-0.5..0.5));
    net.bn1.running_var_mut().mapv_inplace(|_| r.random_range(0.5..2.0));
    net.bn1.set_weight(Array1::from_shape_fn(12, |c| 0.5 + c as f32 / 10.0)).unwrap();
    net.dense1.weight_mut()[[7, 3]] = 5.0;
    let after = net.forward(x.view()).unwrap();
    assert_close(&after, &reference(&net, &x), 1e-4, "after");
    // The same through `predict` and a network rebuilt from a file.
    let image: [f32; 243] =
        x.slice(cnn::ndarray::s![0, .., .., ..]).iter().copied().collect::<Vec<_>>().try_into().unwrap();
    assert_close(
        &Array2::from_shape_vec((1, 10), net.predict(&image).to_vec()).unwrap(),
        &after.slice(cnn::ndarray::s![0..1, ..]).to_owned(),
        0.0,
        "predict",
    );
}

#[test]
fn a_tensor_of_the_wrong_shape_is_refused_with_both_shapes() {
    let mut net = Folded::new();
    let before = net.conv1.weight().to_owned();
    let err = net.conv1.set_weight(Array4::zeros((3, 3, 3, 7))).unwrap_err();
    assert!(
        matches!(&err, Error::ParameterShape { expected, found, .. } if expected == &[3, 3, 3, 12] && found == &[3, 3, 3, 7]),
        "{err}"
    );
    assert!(err.to_string().contains("[3, 3, 3, 12]") && err.to_string().contains("[3, 3, 3, 7]"), "{err}");
    assert_eq!(net.conv1.weight(), before, "a refused tensor changes nothing");
    assert!(net.dense1.set_weight(Array2::zeros((7, 10))).is_err());
    assert!(net.dense1.set_bias(Array1::zeros(11)).is_err());
    assert!(net.bn1.set_running_var(Array1::ones(13)).is_err());
    // A transposed array of the right shape is taken, in the right order.
    let weight = Array2::from_shape_fn((10, 192), |(o, i)| (o * 1000 + i) as f32);
    let weight = weight.reversed_axes();
    assert_eq!(weight.dim(), net.dense1.dim());
    net.dense1.set_weight(weight.clone()).unwrap();
    assert_eq!(net.dense1.weight(), weight);
    // The network still runs.
    assert_eq!(net.forward(Array4::zeros((2, 9, 9, 3)).view()).unwrap().dim(), (2, 10));
}

cnn::cnn! {
    /// Labels that are raw or non-ASCII identifiers, and docs on layers.
    pub struct Labelled {
        input 8x8x2;
        /// The stem: a field named `type`.
        r#type: conv 4 k3 relu;
        #[doc = "A batchnorm with a German name."]
        größe: batchnorm;
        flatten;
        /// The classifier.
        fc: dense 3;
    }
}

#[test]
fn raw_and_non_ascii_labels_name_fields_layers_and_keys() {
    let net = Labelled::new();
    assert_eq!(net.r#type.weight().dim(), (3, 3, 2, 4));
    assert_eq!(net.größe.channels(), 4);
    let names: Vec<&str> = Labelled::LAYERS.iter().map(|l| l.name).collect();
    assert_eq!(names, ["type", "relu", "größe", "flatten", "fc"]);
    assert_eq!(Labelled::OUTPUT, Shape::Flat(3));
    let dir = std::env::temp_dir().join(format!("cnn-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("labelled.safetensors");
    net.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys = file.names();
    keys.sort();
    assert_eq!(keys[..3], ["fc.bias", "fc.weight", "größe.bias"]);
    assert!(keys.contains(&"type.weight"));
    let loaded = Labelled::load(&path).unwrap();
    let x = random4(&mut rng(5), (2, 8, 8, 2));
    assert_eq!(loaded.forward(x.view()).unwrap(), net.forward(x.view()).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_network_is_its_own_plan() {
    // `LAYERS` is read from the plan the runtime walks.
    let out: Vec<Shape> = <Folded as Network>::LAYERS.iter().map(|l| l.output).collect();
    assert_eq!(
        out,
        [Shape::Hwc(4, 4, 12), Shape::Hwc(4, 4, 12), Shape::Hwc(4, 4, 12), Shape::Flat(192), Shape::Flat(10)]
    );
}

#[test]
fn load_pytorch_reads_a_labelled_layer_by_its_label() {
    use safetensors::tensor::{Dtype, TensorView};
    let tensor = |shape: Vec<usize>, first: f32| {
        let n: usize = shape.iter().product();
        let values: Vec<u8> = (0..n).flat_map(|i| (first + i as f32).to_le_bytes()).collect();
        (shape, values)
    };
    let tensors = [
        ("type.weight", tensor(vec![4, 2, 3, 3], 0.0)),
        ("type.bias", tensor(vec![4], 100.0)),
        ("größe.weight", tensor(vec![4], 1.0)),
        ("größe.bias", tensor(vec![4], 0.0)),
        ("größe.running_mean", tensor(vec![4], 0.0)),
        ("größe.running_var", tensor(vec![4], 1.0)),
        ("fc.weight", tensor(vec![3, 144], 0.0)),
        ("fc.bias", tensor(vec![3], 0.0)),
    ];
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (shape, bytes))| (*name, TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    let path = std::env::temp_dir().join(format!("cnn-labelled-torch-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let net = Labelled::load_pytorch(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // OIHW [co, ci, ky, kx] = ((co * 2 + ci) * 3 + ky) * 3 + kx, read as [ky, kx, ci, co].
    assert_eq!(net.r#type.weight()[[1, 2, 1, 3]], (((3 * 2 + 1) * 3 + 1) * 3 + 2) as f32);
    assert_eq!(net.r#type.bias().unwrap()[2], 102.0);
    assert_eq!(net.größe.running_var()[3], 4.0);
    // After flatten PyTorch's columns run C, H, W: feature (y, x, c) = (0, 1, 2) is column 2*36 + 1.
    let feature = 4 + 2; // (0 * 6 + 1) * 4 + 2
    assert_eq!(net.fc.weight()[[feature, 0]], (2 * 36 + 1) as f32);
}

cnn::cnn! {
    /// A conv that Winograd's transform takes, its weights laid out once
    /// and kept from pass to pass while they do not change.
    pub struct Kept {
        input 6x5x16;
        conv 16 k3 p1;
        flatten;
        dense 4;
    }
}

#[test]
fn weights_laid_out_once_are_laid_out_again_after_every_change() {
    let mut net = Kept::with_seed(5);
    let x = random4(&mut rng(5), (2, 6, 5, 16));
    let reference = |net: &Kept| {
        let g = net.conv1.geometry();
        let conv =
            common::conv(x.view(), net.conv1.weight(), net.conv1.bias(), win(&g.height), win(&g.width), 1);
        common::dense(common::flatten(conv.view()).view(), net.dense1.weight(), net.dense1.bias())
    };
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net), 1e-4, "first");
    // The same pass again reads what the first laid out.
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net), 1e-4, "again");
    net.conv1.weight_mut().mapv_inplace(|v| 0.5 - v);
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net), 1e-4, "weight_mut");
    net.conv1
        .set_weight(Array4::from_shape_fn((3, 3, 16, 16), |(y, x, i, o)| (y + 2 * x + i * o) as f32 / 99.0))
        .unwrap();
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net), 1e-4, "set_weight");
    // A training step changes the weights through the optimizer.
    let before = net.conv1.weight().to_owned();
    net.train_step(x.view(), &[1, 3], &mut cnn::optim::Sgd::new(0.1)).unwrap();
    assert_ne!(net.conv1.weight(), before.view());
    assert_close(&net.forward(x.view()).unwrap(), &reference(&net), 1e-4, "train_step");
}
