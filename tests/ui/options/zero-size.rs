cnn::cnn! {
    pub struct Net {
        input 28x0x1;
    }
}

fn main() {}
