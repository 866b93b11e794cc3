cnn::cnn! {
    pub struct Net {
        input 8x8x3;
        conv 8 k3 s2 same;
    }
}

fn main() {}
