cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        /// A doc comment is fine here.
        #[inline]
        conv 8 k3;
        flatten;
        dense 10;
    }
}

fn main() {}
