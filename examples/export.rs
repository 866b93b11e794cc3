//! A network checked here, served anywhere: writes `lenet5.onnx` (for
//! onnxruntime, Triton and every other ONNX server) into cargo's target
//! directory and prints the PyTorch class to train it at scale with.
//!
//! `cargo run --release --example export`

cnn::cnn! {
    /// LeNet-5 on 28x28 MNIST digits.
    pub struct LeNet5 {
        input 28x28x1;
        conv 6 k5 p2 relu;       // 28x28x6
        maxpool 2;               // 14x14x6
        conv 16 k5 relu;         // 10x10x16
        maxpool 2;               // 5x5x16
        flatten;                 // 400
        dense 400 -> 120 relu;
        dense 84 relu;
        dense 10;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), Into::into);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("lenet5.onnx");
    LeNet5::with_seed(1).save_onnx(&path)?;
    println!("# wrote {} (input `input` NCHW (N, 1, 28, 28), output `output` (N, 10))", path.display());
    println!("# the PyTorch class, whose state_dict LeNet5::load_pytorch reads:\n");
    print!("{}", LeNet5::pytorch());
    Ok(())
}
