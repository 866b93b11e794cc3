cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        batchnorm 3;
    }
}

fn main() {}
