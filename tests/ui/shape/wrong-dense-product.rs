cnn::cnn! {
    pub struct Net {
        input 32x32x3;
        conv 32 k3 p1 relu;
        maxpool 2;
        conv 64 k3 p1 relu;
        maxpool 2;
        flatten;
        dense 64*4*4 -> 10;
    }
}

fn main() {}
