// The struct is emitted next to the error: code using it adds no errors.
cnn::cnn! {
    pub struct Net {
        input 28x28x1;
        conv 8 k3 relu;
        conv 16 k3 s2;
        flatten;
        dense 10;
    }
}

fn main() {
    let net = Net::new();
    let _conv = &net.conv1;
    let _ = Net::summary();
}
