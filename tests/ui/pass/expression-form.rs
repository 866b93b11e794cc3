// `cnn![...]` is a value of an unnamed network.
use cnn::Network;

fn output_of<N: Network>(_: &N) -> cnn::Shape {
    N::OUTPUT
}

fn main() {
    let net = cnn::cnn![input 28x28x1; conv 8 k3 relu; flatten; dense 10];
    assert_eq!(output_of(&net), cnn::Shape::Flat(10));
    let x = cnn::ndarray::Array4::<f32>::zeros((3, 28, 28, 1));
    assert_eq!(net.forward(x.view()).unwrap().dim(), (3, 10));
}
