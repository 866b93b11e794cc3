cnn::cnn! {
    pub struct Net {
        input 4x4x64;
        flatten;
        dense 64*4*4;
    }
}

fn main() {}
