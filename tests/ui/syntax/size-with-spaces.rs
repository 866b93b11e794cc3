cnn::cnn! {
    pub struct Net {
        input 28 x 28 x 1;
    }
}

fn main() {}
