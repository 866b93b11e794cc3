cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        convv 32 k3;
    }
}

fn main() {}
