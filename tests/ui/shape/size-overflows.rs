cnn::cnn! {
    pub struct Net {
        input 99999999999x99999999999x99999999999;
        flatten;
        dense 10;
    }
}

fn main() {}
