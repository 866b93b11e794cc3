cnn::cnn! {
    pub struct Net {
        input 5x5x3;
        conv 8 k7;
    }
}

fn main() {}
