cnn::cnn! {
    pub struct Net {
        input 8x8x1;
        input 8x8x1;
    }
}

fn main() {}
