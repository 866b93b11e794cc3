cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 32 k3 relu;
        dense 10;
    }
}

fn main() {}
