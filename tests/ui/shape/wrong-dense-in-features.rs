cnn::cnn! {
    pub struct Net {
        input 32x32x3;
        conv 32 k7 s2 floor;
        relu;
        flatten;
        dense 4608 -> 10;
    }
}

fn main() {}
