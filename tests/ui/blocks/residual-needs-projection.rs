cnn::cnn! {
    pub struct Net {
        input 56x56x64;
        layer2: {
            residual { conv1: conv 128 k3 s2 p1 nobias floor; bn1: batchnorm; relu; conv2: conv 128 k3 p1 nobias; bn2: batchnorm } relu;
        };
        globalavgpool;
        dense 10;
    }
}

fn main() {}
