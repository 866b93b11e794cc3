//! torchvision's ResNet-18, ResNet-50, MobileNetV2, GoogLeNet and AlexNet written with `cnn!`,
//! their state_dict names as they are: parameter counts and names.

use cnn::Shape;

cnn::cnn! {
    /// torchvision's `resnet18()`.
    pub struct ResNet18 {
        input 224x224x3;
        conv1: conv 64 k7 s2 p3 nobias floor;
        bn1: batchnorm;
        relu;
        maxpool 3 s2 p1 floor;
        layer1: {
            residual { conv1: conv 64 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm } relu;
            residual { conv1: conv 64 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm } relu;
        };
        layer2: {
            residual { conv1: conv 128 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm }
                downsample: shortcut { conv 128 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 128 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm } relu;
        };
        layer3: {
            residual { conv1: conv 256 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm }
                downsample: shortcut { conv 256 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 256 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm } relu;
        };
        layer4: {
            residual { conv1: conv 512 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 512 k3 p1 nobias; bn2: batchnorm }
                downsample: shortcut { conv 512 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 512 k3 p1 nobias; bn1: batchnorm; relu; conv2: conv 512 k3 p1 nobias; bn2: batchnorm } relu;
        };
        avgpool: globalavgpool;
        fc: dense 512 -> 1000;
    }
}

#[test]
fn resnet18_counts_and_names_as_torchvision() {
    // sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert_eq!(ResNet18::PARAMETERS, 11_689_512);
    assert_eq!(ResNet18::OUTPUT, Shape::Flat(1000));
    let net = ResNet18::new();
    assert_eq!(net.layer2_0_downsample_0.weight().dim(), (1, 1, 64, 128));
    assert_eq!(net.layer4_1_conv2.geometry().height.output, 7);
    let names: Vec<&str> = ResNet18::LAYERS.iter().map(|l| l.name).collect();
    for name in
        ["conv1", "bn1", "layer1.0.conv1", "layer1.0", "layer2.0.downsample.0", "layer2.0.downsample.1", "fc"]
    {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // 4 + 2 layers at the top, 5 and a merge in each of 8 blocks, 2 in each of 3 projections.
    assert_eq!(ResNet18::LAYERS.len(), 4 + 2 + 8 * 6 + 3 * 2);
    let merge = ResNet18::LAYERS.iter().find(|l| l.name == "layer2.0").unwrap();
    assert_eq!((merge.source, merge.output), ("residual + shortcut relu", Shape::Hwc(28, 28, 128)));
    let summary = ResNet18::summary();
    assert!(summary.contains("28x28x128 + 28x28x128"), "{summary}");
    assert!(summary.contains("parameters: 11,689,512"), "{summary}");
}

cnn::cnn! {
    /// torchvision's `resnet50()`: Bottleneck blocks, the stride on the 3x3.
    pub struct ResNet50 {
        input 224x224x3;
        conv1: conv 64 k7 s2 p3 nobias floor;
        bn1: batchnorm;
        relu;
        maxpool 3 s2 p1 floor;
        layer1: {
            residual { conv1: conv 64 k1 nobias; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 256 k1 nobias; bn3: batchnorm } downsample: shortcut { conv 256 k1 nobias; batchnorm } relu;
            residual { conv1: conv 64 k1 nobias; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 256 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 64 k1 nobias; bn1: batchnorm; relu; conv2: conv 64 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 256 k1 nobias; bn3: batchnorm } relu;
        };
        layer2: {
            residual { conv1: conv 128 k1 nobias; bn1: batchnorm; relu; conv2: conv 128 k3 s2 p1 nobias floor; bn2: batchnorm; relu; conv3: conv 512 k1 nobias; bn3: batchnorm } downsample: shortcut { conv 512 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 128 k1 nobias; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 512 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 128 k1 nobias; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 512 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 128 k1 nobias; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 512 k1 nobias; bn3: batchnorm } relu;
        };
        layer3: {
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 s2 p1 nobias floor; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } downsample: shortcut { conv 1024 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 256 k1 nobias; bn1: batchnorm; relu; conv2: conv 256 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 1024 k1 nobias; bn3: batchnorm } relu;
        };
        layer4: {
            residual { conv1: conv 512 k1 nobias; bn1: batchnorm; relu; conv2: conv 512 k3 s2 p1 nobias floor; bn2: batchnorm; relu; conv3: conv 2048 k1 nobias; bn3: batchnorm } downsample: shortcut { conv 2048 k1 s2 nobias floor; batchnorm } relu;
            residual { conv1: conv 512 k1 nobias; bn1: batchnorm; relu; conv2: conv 512 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 2048 k1 nobias; bn3: batchnorm } relu;
            residual { conv1: conv 512 k1 nobias; bn1: batchnorm; relu; conv2: conv 512 k3 p1 nobias; bn2: batchnorm; relu; conv3: conv 2048 k1 nobias; bn3: batchnorm } relu;
        };
        avgpool: globalavgpool;
        fc: dense 2048 -> 1000;
    }
}

cnn::cnn! {
    /// torchvision's `mobilenet_v2()`: inverted residuals, ReLU6, depthwise convs.
    pub struct MobileNetV2 {
        input 224x224x3;
        features: {
            { conv 32 k3 s2 p1 nobias floor; batchnorm; relu6 };
            { conv: { { conv 32 k3 p1 g32 nobias; batchnorm; relu6 }; conv 16 k1 nobias; batchnorm } };
            { conv: { { conv 96 k1 nobias; batchnorm; relu6 }; { conv 96 k3 s2 p1 g96 nobias floor; batchnorm; relu6 }; conv 24 k1 nobias; batchnorm } };
            residual { conv: { { conv 144 k1 nobias; batchnorm; relu6 }; { conv 144 k3 p1 g144 nobias; batchnorm; relu6 }; conv 24 k1 nobias; batchnorm } };
            { conv: { { conv 144 k1 nobias; batchnorm; relu6 }; { conv 144 k3 s2 p1 g144 nobias floor; batchnorm; relu6 }; conv 32 k1 nobias; batchnorm } };
            residual { conv: { { conv 192 k1 nobias; batchnorm; relu6 }; { conv 192 k3 p1 g192 nobias; batchnorm; relu6 }; conv 32 k1 nobias; batchnorm } };
            residual { conv: { { conv 192 k1 nobias; batchnorm; relu6 }; { conv 192 k3 p1 g192 nobias; batchnorm; relu6 }; conv 32 k1 nobias; batchnorm } };
            { conv: { { conv 192 k1 nobias; batchnorm; relu6 }; { conv 192 k3 s2 p1 g192 nobias floor; batchnorm; relu6 }; conv 64 k1 nobias; batchnorm } };
            residual { conv: { { conv 384 k1 nobias; batchnorm; relu6 }; { conv 384 k3 p1 g384 nobias; batchnorm; relu6 }; conv 64 k1 nobias; batchnorm } };
            residual { conv: { { conv 384 k1 nobias; batchnorm; relu6 }; { conv 384 k3 p1 g384 nobias; batchnorm; relu6 }; conv 64 k1 nobias; batchnorm } };
            residual { conv: { { conv 384 k1 nobias; batchnorm; relu6 }; { conv 384 k3 p1 g384 nobias; batchnorm; relu6 }; conv 64 k1 nobias; batchnorm } };
            { conv: { { conv 384 k1 nobias; batchnorm; relu6 }; { conv 384 k3 p1 g384 nobias; batchnorm; relu6 }; conv 96 k1 nobias; batchnorm } };
            residual { conv: { { conv 576 k1 nobias; batchnorm; relu6 }; { conv 576 k3 p1 g576 nobias; batchnorm; relu6 }; conv 96 k1 nobias; batchnorm } };
            residual { conv: { { conv 576 k1 nobias; batchnorm; relu6 }; { conv 576 k3 p1 g576 nobias; batchnorm; relu6 }; conv 96 k1 nobias; batchnorm } };
            { conv: { { conv 576 k1 nobias; batchnorm; relu6 }; { conv 576 k3 s2 p1 g576 nobias floor; batchnorm; relu6 }; conv 160 k1 nobias; batchnorm } };
            residual { conv: { { conv 960 k1 nobias; batchnorm; relu6 }; { conv 960 k3 p1 g960 nobias; batchnorm; relu6 }; conv 160 k1 nobias; batchnorm } };
            residual { conv: { { conv 960 k1 nobias; batchnorm; relu6 }; { conv 960 k3 p1 g960 nobias; batchnorm; relu6 }; conv 160 k1 nobias; batchnorm } };
            { conv: { { conv 960 k1 nobias; batchnorm; relu6 }; { conv 960 k3 p1 g960 nobias; batchnorm; relu6 }; conv 320 k1 nobias; batchnorm } };
            { conv 1280 k1 nobias; batchnorm; relu6 };
        };
        globalavgpool;
        classifier: { dropout 0.2; dense 1000 };
    }
}

#[test]
fn resnet50_and_mobilenet_v2_count_as_torchvision() {
    // sum(p.numel() for p in torchvision.models.resnet50().parameters())
    assert_eq!(ResNet50::PARAMETERS, 25_557_032);
    // sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters())
    assert_eq!(MobileNetV2::PARAMETERS, 3_504_872);
    let names: Vec<&str> = MobileNetV2::LAYERS.iter().map(|l| l.name).collect();
    for name in [
        "features.0.0",
        "features.1.conv.0.0",
        "features.2.conv.1.0",
        "features.3.conv.2",
        "features.3",
        "features.18.1",
        "classifier.1",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let net = MobileNetV2::new();
    assert_eq!(net.features_3_conv_1_0.geometry().groups, 144);
    assert_eq!(MobileNetV2::OUTPUT, Shape::Flat(1000));
    assert_eq!(
        ResNet50::LAYERS.iter().find(|l| l.name == "layer4.2").unwrap().output,
        Shape::Hwc(7, 7, 2048)
    );
}

cnn::cnn! {
    /// torchvision's `googlenet(aux_logits=False)`: Inception blocks are concats.
    pub struct GoogLeNet {
        input 224x224x3;
        conv1: { conv: conv 64 k7 s2 p3 nobias floor; bn: batchnorm 0.001; relu };
        maxpool1: maxpool 3 s2 ceil;
        conv2: { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu };
        conv3: { conv: conv 192 k3 p1 nobias; bn: batchnorm 0.001; relu };
        maxpool2: maxpool 3 s2 ceil;
        inception3a: concat
            branch1: { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 96 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 128 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 16 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 32 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 32 k1 nobias; bn: batchnorm 0.001; relu } };
        inception3b: concat
            branch1: { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 192 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 32 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 96 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu } };
        maxpool3: maxpool 3 s2 ceil;
        inception4a: concat
            branch1: { conv: conv 192 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 96 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 208 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 16 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 48 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu } };
        inception4b: concat
            branch1: { conv: conv 160 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 112 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 224 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 24 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 64 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu } };
        inception4c: concat
            branch1: { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 256 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 24 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 64 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu } };
        inception4d: concat
            branch1: { conv: conv 112 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 144 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 288 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 32 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 64 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 64 k1 nobias; bn: batchnorm 0.001; relu } };
        inception4e: concat
            branch1: { conv: conv 256 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 160 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 320 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 32 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 128 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu } };
        maxpool4: maxpool 2 ceil;
        inception5a: concat
            branch1: { conv: conv 256 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 160 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 320 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 32 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 128 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu } };
        inception5b: concat
            branch1: { conv: conv 384 k1 nobias; bn: batchnorm 0.001; relu }
            branch2: { { conv: conv 192 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 384 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch3: { { conv: conv 48 k1 nobias; bn: batchnorm 0.001; relu }; { conv: conv 128 k3 p1 nobias; bn: batchnorm 0.001; relu } }
            branch4: { maxpool 3 s1 p1 ceil; { conv: conv 128 k1 nobias; bn: batchnorm 0.001; relu } };
        avgpool: globalavgpool;
        dropout: dropout 0.2;
        fc: dense 1024 -> 1000;
    }
}

#[test]
fn googlenet_counts_and_names_as_torchvision() {
    // sum(p.numel() for p in torchvision.models.googlenet(aux_logits=False).parameters())
    assert_eq!(GoogLeNet::PARAMETERS, 6_624_904);
    let output = |name: &str| GoogLeNet::LAYERS.iter().find(|l| l.name == name).unwrap().output;
    // PyTorch rounds 55.5 and 27.5 up (ceil_mode=True): 56 and 28.
    assert_eq!(output("maxpool1"), Shape::Hwc(56, 56, 64));
    assert_eq!(output("inception3a"), Shape::Hwc(28, 28, 256));
    assert_eq!(output("inception4e"), Shape::Hwc(14, 14, 832));
    assert_eq!(output("inception5b"), Shape::Hwc(7, 7, 1024));
    assert_eq!(output("inception4a.branch4.1.conv"), Shape::Hwc(14, 14, 64));
    let net = GoogLeNet::new();
    assert_eq!(net.inception3b_branch2_1_conv.weight().dim(), (3, 3, 128, 192));
    assert_eq!(GoogLeNet::OUTPUT, Shape::Flat(1000));
}

cnn::cnn! {
    /// torchvision's `alexnet()`, as `scripts/cnn_from_torch.py` prints it:
    /// its adaptive pool to 6x6 gets 6x6 and is the identity.
    pub struct AlexNet {
        input 224x224x3;
        features: {
            conv 3 -> 64 k11 s4 p2 floor; relu; maxpool k3 s2;
            conv 64 -> 192 k5 p2; relu; maxpool k3 s2;
            conv 192 -> 384 k3 p1; relu;
            conv 384 -> 256 k3 p1; relu;
            conv 256 -> 256 k3 p1; relu; maxpool k3 s2;
        };
        avgpool: flatten;
        classifier: {
            dropout 0.5; dense 9216 -> 4096; relu;
            dropout 0.5; dense 4096 -> 4096; relu;
            dense 4096 -> 1000;
        };
    }
}

#[test]
fn alexnet_counts_and_names_as_torchvision() {
    // sum(p.numel() for p in torchvision.models.alexnet().parameters())
    assert_eq!(AlexNet::PARAMETERS, 61_100_840);
    let output = |name: &str| AlexNet::LAYERS.iter().find(|l| l.name == name).unwrap().output;
    // (224 + 2*2 - 11) / 4 + 1 = 55.25: PyTorch rounds down.
    assert_eq!(output("features.0"), Shape::Hwc(55, 55, 64));
    assert_eq!(output("features.12"), Shape::Hwc(6, 6, 256));
    assert_eq!(output("classifier.6"), Shape::Flat(1000));
    let net = AlexNet::new();
    assert_eq!(net.classifier_1.weight().dim(), (9216, 4096));
}
