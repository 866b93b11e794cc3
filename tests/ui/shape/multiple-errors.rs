// Every mistake of an invocation shows in one build, in every struct.
cnn::cnn! {
    pub struct First {
        input 28x28x1;
        conv 32 k3 s2 s3;
        maxpool 2 ceil floor;
        conv 16 k3;
        dense 10;
    }

    pub struct Second {
        input 28x28x1;
        conv 32 k7 s2;
        flatten;
        dense 10;
    }
}

fn main() {}
