cnn::cnn! {
    pub struct Net {
        input 28x28x3;
        concat { conv 8 k3 s2 } { conv 8 k2 qq3 } { dense 7 };
        flatten;
        dense 10;
    }
}

fn main() {}
