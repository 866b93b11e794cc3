cnn::cnn! {
    pub struct Net {
        input 8x8x1;
        flatten;
        conv 8 k3;
    }
}

fn main() {}
