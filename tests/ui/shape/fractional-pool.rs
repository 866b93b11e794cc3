cnn::cnn! {
    pub struct Net {
        input 25x25x3;
        maxpool 2;
    }
}

fn main() {}
