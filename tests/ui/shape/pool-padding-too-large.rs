cnn::cnn! {
    pub struct Net {
        input 8x8x3;
        maxpool 2 p2;
    }
}

fn main() {}
