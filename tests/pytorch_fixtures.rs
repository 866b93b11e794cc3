//! Networks exported by real PyTorch (`scripts/make_fixtures.py`, which also
//! printed the definitions below with `scripts/cnn_from_torch.py`): their
//! `state_dict`s load with `load_pytorch` and give PyTorch's own outputs.

mod common;

use cnn::Network;
use cnn::ndarray::{Array4, ArrayD, IxDyn};
use common::assert_close;
use safetensors::SafeTensors;

// `lenet5`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Lenet5 {
        input 32x32x1;
        conv 1 -> 6 k5;                         // 0: 28x28x6
        tanh;                                   // 1: 28x28x6
        avgpool k2;                             // 2: 14x14x6
        conv 6 -> 16 k5;                        // 3: 10x10x16
        tanh;                                   // 4: 10x10x16
        avgpool k2;                             // 5: 5x5x16
        flatten;                                // 6: 400
        dense 400 -> 120;                       // 7: 120
        tanh;                                   // 8: 120
        dense 120 -> 84;                        // 9: 84
        tanh;                                   // 10: 84
        dense 84 -> 10;                         // 11: 10
    }
}
// `options`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Options {
        input 15x11x3;
        conv 3 -> 8 k3x5 s2x1 p1x2;             // 0: 8x11x8
        batchnorm;                              // 1: 8x11x8
        leakyrelu 0.2;                          // 2: 8x11x8
        conv 8 -> 8 k4 same g4 nobias;          // 3: 8x11x8
        sigmoid;                                // 4: 8x11x8
        conv 8 -> 12 k3 same d2;                // 5: 8x11x12
        relu;                                   // 6: 8x11x12
        maxpool k3 s2 p1 ceil;                  // 7: 5x6x12
        avgpool k2 p1 ceil;                     // 8: 3x4x12
        conv 12 -> 6 k2 s2 floor;               // 9: 1x2x6
        flatten;                                // 10: 12
        batchnorm;                              // 11: 12
        dropout 0.3;                            // 12: 12
        dense 12 -> 5;                          // 13: 5
        softmax;                                // 14: 5
    }
}
// `globalpool`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Globalpool {
        input 13x13x2;
        conv 2 -> 6 k3 p1;                      // 0: 13x13x6
        batchnorm 0.001;                        // 1: 13x13x6
        relu;                                   // 2: 13x13x6
        maxpool k2 ceil;                        // 3: 7x7x6
        conv 6 -> 10 k3 s2;                     // 4: 3x3x10
        relu;                                   // 5: 3x3x10
        globalavgpool;                          // 6: 1x1x10
        flatten;                                // 7: 10
        dense 10 -> 4;                          // 8: 4
    }
}
// `flatbn`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Flatbn {
        input 6x5x3;
        conv 3 -> 4 k3;                         // 0: 4x3x4
        relu;                                   // 1: 4x3x4
        flatten;                                // 2: 48
        batchnorm;                              // 3: 48
        dense 48 -> 7;                          // 4: 7
        tanh;                                   // 5: 7
    }
}

// `tinyresnet`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Tinyresnet {
        input 12x12x3;
        conv1: conv 3 -> 8 k3 p1 nobias;
        bn1: batchnorm;
        relu: relu;
        layer1: {
            residual {
                conv1: conv 8 -> 8 k3 p1 nobias;
                bn1: batchnorm;
                relu;
                conv2: conv 8 -> 8 k3 p1 nobias;
                bn2: batchnorm;
            } relu;
            residual {
                conv1: conv 8 -> 8 k3 p1 nobias;
                bn1: batchnorm;
                relu;
                conv2: conv 8 -> 8 k3 p1 nobias;
                bn2: batchnorm;
            } relu;
        };
        layer2: {
            residual {
                conv1: conv 8 -> 16 k3 s2 p1 nobias floor;
                bn1: batchnorm;
                relu;
                conv2: conv 16 -> 16 k3 p1 nobias;
                bn2: batchnorm;
            } downsample: shortcut {
                conv 8 -> 16 k1 s2 nobias floor;
                batchnorm;
            } relu;
        };
        layer3: {
            residual {
                conv1: conv 16 -> 8 k1 nobias;
                bn1: batchnorm;
                relu;
                conv2: conv 8 -> 8 k3 s2 p1 nobias floor;
                bn2: batchnorm;
                relu;
                conv3: conv 8 -> 32 k1 nobias;
                bn3: batchnorm;
            } downsample: shortcut {
                conv 16 -> 32 k1 s2 nobias floor;
                batchnorm;
            } relu;
            residual {
                conv1: conv 32 -> 8 k1 nobias;
                bn1: batchnorm;
                relu;
                conv2: conv 8 -> 8 k3 p1 nobias;
                bn2: batchnorm;
                relu;
                conv3: conv 8 -> 32 k1 nobias;
                bn3: batchnorm;
            } relu;
        };
        avgpool: globalavgpool;
        fc: dense 32 -> 5;
    }
}
// `mobilenet`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Mobilenet {
        input 32x32x3;
        features: {
            {
                conv 3 -> 8 k3 s2 p1 nobias floor;
                batchnorm;
                relu6;
            };
            residual {
                conv: {
                    {
                        conv 8 -> 8 k3 p1 g8 nobias;
                        batchnorm;
                        relu6;
                    };
                    conv 8 -> 8 k1 nobias;
                    batchnorm;
                };
            };
            {
                conv: {
                    {
                        conv 8 -> 48 k1 nobias;
                        batchnorm;
                        relu6;
                    };
                    {
                        conv 48 -> 48 k3 s2 p1 g48 nobias floor;
                        batchnorm;
                        relu6;
                    };
                    conv 48 -> 8 k1 nobias;
                    batchnorm;
                };
            };
            residual {
                conv: {
                    {
                        conv 8 -> 48 k1 nobias;
                        batchnorm;
                        relu6;
                    };
                    {
                        conv 48 -> 48 k3 p1 g48 nobias;
                        batchnorm;
                        relu6;
                    };
                    conv 48 -> 8 k1 nobias;
                    batchnorm;
                };
            };
            {
                conv: {
                    {
                        conv 8 -> 48 k1 nobias;
                        batchnorm;
                        relu6;
                    };
                    {
                        conv 48 -> 48 k3 s2 p1 g48 nobias floor;
                        batchnorm;
                        relu6;
                    };
                    conv 48 -> 8 k1 nobias;
                    batchnorm;
                };
            };
            residual {
                conv: {
                    {
                        conv 8 -> 48 k1 nobias;
                        batchnorm;
                        relu6;
                    };
                    {
                        conv 48 -> 48 k3 p1 g48 nobias;
                        batchnorm;
                        relu6;
                    };
                    conv 48 -> 8 k1 nobias;
                    batchnorm;
                };
            };
            {
                conv 8 -> 1280 k1 nobias;
                batchnorm;
                relu6;
            };
        };
        globalavgpool;
        classifier: {
            dropout 0.2;
            dense 1280 -> 6;
        };
    }
}

// `tinygooglenet`, PyTorch 2.15.0+cu132
cnn::cnn! {
    pub struct Tinygooglenet {
        input 27x27x3;
        conv1: {
            conv: conv 3 -> 8 k7 s2 p3 nobias;
            bn: batchnorm 0.001;
            relu;
        };
        maxpool1: maxpool k3 s2 ceil;
        inception3a: concat branch1: {
            conv: conv 8 -> 4 k1 nobias;
            bn: batchnorm 0.001;
            relu;
        } branch2: {
            {
                conv: conv 8 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 4 -> 8 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch3: {
            {
                conv: conv 8 -> 2 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 2 -> 4 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch4: {
            maxpool k3 s1 p1;
            {
                conv: conv 8 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        };
        inception3b: concat branch1: {
            conv: conv 20 -> 8 k1 nobias;
            bn: batchnorm 0.001;
            relu;
        } branch2: {
            {
                conv: conv 20 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 4 -> 8 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch3: {
            {
                conv: conv 20 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 4 -> 4 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch4: {
            maxpool k3 s1 p1;
            {
                conv: conv 20 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        };
        maxpool3: maxpool k2 ceil;
        inception4a: concat branch1: {
            conv: conv 24 -> 8 k1 nobias;
            bn: batchnorm 0.001;
            relu;
        } branch2: {
            {
                conv: conv 24 -> 8 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 8 -> 8 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch3: {
            {
                conv: conv 24 -> 4 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
            {
                conv: conv 4 -> 8 k3 p1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        } branch4: {
            maxpool k3 s1 p1;
            {
                conv: conv 24 -> 8 k1 nobias;
                bn: batchnorm 0.001;
                relu;
            };
        };
        avgpool: globalavgpool;
        dropout: dropout 0.2;
        fc: dense 32 -> 5;
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The input batch (NHWC) and PyTorch's output of fixture `name`.
fn io(name: &str) -> (Array4<f32>, ArrayD<f32>) {
    let bytes = std::fs::read(format!("{FIXTURES}/{name}.io.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let read = |key: &str| {
        let t = file.tensor(key).unwrap();
        let values: Vec<f32> =
            t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        ArrayD::from_shape_vec(IxDyn(t.shape()), values).unwrap()
    };
    (read("input").into_dimensionality().unwrap(), read("output"))
}

fn check<N: Network>(name: &str, load: fn(&str) -> Result<N, cnn::Error>) {
    let net = load(&format!("{FIXTURES}/{name}.safetensors")).unwrap();
    let (input, expected) = io(name);
    let actual = cnn::Output::into_dyn(net.forward(input.view()).unwrap());
    assert_close(&actual, &expected, 1e-4, name);
}

#[test]
fn lenet5_gives_pytorchs_output() {
    check("lenet5", |p| Lenet5::load_pytorch(p));
}

#[test]
fn strides_dilation_groups_same_ceil_and_flat_batchnorm_give_pytorchs_output() {
    check("options", |p| Options::load_pytorch(p));
}

#[test]
fn global_pool_gives_pytorchs_output() {
    check("globalpool", |p| Globalpool::load_pytorch(p));
}

#[test]
fn batchnorm_after_flatten_gives_pytorchs_output() {
    check("flatbn", |p| Flatbn::load_pytorch(p));
}

#[test]
fn torchvision_basic_blocks_and_bottlenecks_give_pytorchs_output() {
    check("tinyresnet", |p| Tinyresnet::load_pytorch(p));
}

#[test]
fn torchvision_mobilenet_v2_gives_pytorchs_output() {
    check("mobilenet", |p| Mobilenet::load_pytorch(p));
}

#[test]
fn torchvision_inception_blocks_give_pytorchs_output() {
    check("tinygooglenet", |p| Tinygooglenet::load_pytorch(p));
}

#[test]
fn a_missing_tensor_inside_a_block_is_named() {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(format!("{FIXTURES}/tinyresnet.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, TensorView<'_>)> =
        file.tensors().into_iter().filter(|(name, _)| name != "layer2.0.downsample.0.weight").collect();
    let path = std::env::temp_dir().join(format!("cnn-missing-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(kept, None).unwrap()).unwrap();
    let err = Tinyresnet::load_pytorch(&path).err().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&err, cnn::Error::MissingTensor { name, expected, .. }
            if name == "layer2.0.downsample.0.weight" && expected == &[16, 8, 1, 1]),
        "{err}"
    );
}
