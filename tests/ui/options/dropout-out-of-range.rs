cnn::cnn! {
    pub struct Net {
        input 4x4x1;
        flatten;
        dropout 1.5;
    }
}

fn main() {}
