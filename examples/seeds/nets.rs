//! The networks of the classic shape questions, written with `cnn!`.

cnn::cnn! {
    /// LeNet-5 (LeCun et al. 1998), as in PyTorch's tutorials: 32x32 inputs.
    pub struct LeNet5 {
        input 32x32x1;
        conv 6 k5 tanh;        // 28x28x6
        avgpool 2;             // 14x14x6
        conv 16 k5 tanh;       // 10x10x16
        avgpool 2;             // 5x5x16
        flatten;               // 400
        dense 400 -> 120 tanh;
        dense 84 tanh;
        dense 10;
    }

    /// The CNN of TensorFlow's CIFAR-10 tutorial. Its second pool halves 13:
    /// Keras rounds down silently; here it says `floor`.
    pub struct TfCifar {
        input 32x32x3;
        conv 32 k3 relu;       // 30x30x32
        maxpool 2;             // 15x15x32
        conv 64 k3 relu;       // 13x13x64
        maxpool 2 floor;       // 6x6x64
        conv 64 k3 relu;       // 4x4x64
        flatten;               // 1024
        dense 64 relu;
        dense 10;
    }

    /// Three conv-batchnorm-relu-pool blocks on CIFAR-10: the `nn.Linear(?, 10)`
    /// of the question is `64*4*4`.
    pub struct Cifar3Block {
        input 32x32x3;
        conv 32 k3 p1; batchnorm; relu; maxpool 2;   // 16x16x32
        conv 64 k3 p1; batchnorm; relu; maxpool 2;   // 8x8x64
        conv 64 k3 p1; batchnorm; relu; maxpool 2;   // 4x4x64
        flatten;
        dense 64*4*4 -> 10;
    }

    /// fastai's all-convolutional MNIST model: stride-2 convs, then global
    /// average pooling.
    pub struct FastaiMnist {
        input 28x28x1;
        conv 8 k5 s2 p2 floor relu;    // (28 + 4 - 5) / 2 + 1 = 14.5 -> 14
        conv 16 k3 s2 p1 floor relu;   // 7.5 -> 7
        conv 32 k3 s2 p1 relu;         // 4
        conv 32 k3 s2 p1 floor relu;   // 2.5 -> 2
        globalavgpool;                 // 32
        dense 10;
    }

    /// The question "what comes out of `conv 32 k7 s2` on 32x32?": 13.5,
    /// which PyTorch rounds down to 13 without a word.
    pub struct PytorchQuestion {
        input 32x32x3;
        conv 32 k7 s2 floor relu;      // 13x13x32
        flatten;                       // 5408
        dense 5408 -> 10;
    }
}
