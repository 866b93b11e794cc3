cnn::cnn! {
    pub struct Net {
        input 4x4x16;
        conv 4*4 -> 8 k1;
    }
}

fn main() {}
