cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        type: conv 8 k3;
        self: conv 8 k3;
        _: relu;
        r#match: flatten;
        dense 10;
    }
}

fn main() {}
