cnn::cnn! {
    pub struct Net {
        input 32x20x3;
        conv 8 k3x4 s2;
    }
}

fn main() {}
