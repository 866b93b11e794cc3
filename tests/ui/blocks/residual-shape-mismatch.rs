cnn::cnn! {
    pub struct Net {
        input 32x32x16;
        residual { conv 32 k3 s2 p1 floor; batchnorm } shortcut { conv 32 k1 nobias; batchnorm } relu;
        globalavgpool;
        dense 10;
    }
}

fn main() {}
