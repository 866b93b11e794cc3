cnn::cnn! {
    pub struct Net {
        input 8x8x4;
        fn: { conv 4 k3 p1 };
        residual { conv 4 k3 p1 } loop: shortcut { conv 4 k1 };
        flatten;
        dense 10;
    }
}

fn main() {}
