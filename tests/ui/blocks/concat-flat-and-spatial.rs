cnn::cnn! {
    pub struct Net {
        input 8x8x4;
        concat { globalavgpool } { conv 4 k3 p1 };
        flatten;
        dense 10;
    }
}

fn main() {}
