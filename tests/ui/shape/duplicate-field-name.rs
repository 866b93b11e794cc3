cnn::cnn! {
    pub struct Net {
        input 8x8x1;
        conv2: conv 4 k3;
        conv 4 k3;
    }
}

fn main() {}
