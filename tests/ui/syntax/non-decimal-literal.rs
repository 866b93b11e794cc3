cnn::cnn! {
    pub struct Net {
        input 0x1cx28x1;
    }
}

fn main() {}
