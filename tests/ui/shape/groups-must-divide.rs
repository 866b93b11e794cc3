cnn::cnn! {
    pub struct Net {
        input 8x8x6;
        conv 16 k3 g4;
    }
}

fn main() {}
