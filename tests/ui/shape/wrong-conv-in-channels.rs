cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 3 -> 8 k3;
    }
}

fn main() {}
