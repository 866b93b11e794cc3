cnn::cnn! {
    pub struct Net {
        input 1e5x1;
    }
}

fn main() {}
