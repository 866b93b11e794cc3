// The networks of the classic questions compile, with the shapes PyTorch gives.
use cnn::{Network, Shape};

cnn::cnn! {
    /// LeNet-5 (LeCun et al. 1998).
    pub struct LeNet5 {
        input 32x32x1;
        conv 6 k5 tanh;
        avgpool 2;
        conv 16 k5 tanh;
        avgpool 2;
        flatten;
        dense 400 -> 120 tanh;
        dense 84 tanh;
        dense 10;
    }

    /// `conv 32 k7 s2` on 32x32: 13.5, rounded down as PyTorch does.
    pub struct PytorchQuestion {
        input 32x32x3;
        conv 32 k7 s2 floor;
        relu;
        flatten;
        dense 5408 -> 10;
    }
}

fn main() {
    assert_eq!(LeNet5::OUTPUT, Shape::Flat(10));
    assert_eq!(LeNet5::PARAMETERS, 61_706);
    assert_eq!(<PytorchQuestion as Network>::LAYERS[0].output, Shape::Hwc(13, 13, 32));
}
