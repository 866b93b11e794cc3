cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 8 k0;
    }
}

fn main() {}
