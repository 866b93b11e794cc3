cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 32 k7 s2;
        flatten;
        dense 10;
    }
}

fn main() {}
