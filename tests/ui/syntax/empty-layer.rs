cnn::cnn! {
    pub struct Net {
        input 28x28x1;;
        flatten;
    }
}

fn main() {}
