cnn::cnn! {
    pub struct Net {
        input 28x28x8;
        concat { conv 16 k1 } { maxpool 2; conv 16 k3 p1 };
        globalavgpool;
        dense 10;
    }
}

fn main() {}
