// Every layer and option of the grammar, labels and fused activations.
cnn::cnn! {
    #[derive(Clone, Debug)]
    pub struct Everything {
        input 33x31x4;
        stem: conv 4 -> 8 k3x5 s2x1 p1x2 d1 g2 nobias floor leakyrelu 0.2;
        batchnorm 1e-3;
        conv 8 k3 same d2 sigmoid;
        conv 8 k4 same tanh;
        conv 8 k1 valid;
        maxpool 3 s2 p1 ceil;
        avgpool k2x2 s1 floor;
        relu;
        leakyrelu;
        globalmaxpool;
        dense 8 -> 16 relu;
        dropout 0.25;
        batchnorm;
        dense 16 -> 4 softmax;
    }

    pub(crate) struct Pools {
        input 7x7x2;
        avgpool 2 ceil;
        globalavgpool;
        flatten;
        sigmoid;
    }
}

fn main() {
    let net = Everything::new();
    let _ = net.clone();
    let _ = (&net.stem, &net.bn1, &net.conv2, &net.conv4, &net.dense2, &net.bn2);
    let probs = net.predict(&[0.5; 33 * 31 * 4]);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(Pools::OUTPUT, cnn::Shape::Flat(2));
}
