cnn::cnn! {
    pub struct Net {
        conv 8 k3;
        flatten;
        dense 10;
    }
}

fn main() {}
