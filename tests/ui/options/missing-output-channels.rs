cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv k3;
    }
}

fn main() {}
