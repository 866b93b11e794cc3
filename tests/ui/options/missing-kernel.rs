cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 32;
    }
}

fn main() {}
