cnn::cnn! {
    pub struct Net {

    }
}

fn main() {}
