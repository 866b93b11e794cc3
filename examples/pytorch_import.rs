//! Runs a LeNet-5 trained or built in PyTorch.
//!
//! In Python:
//!
//! ```python
//! from safetensors.torch import save_file
//! save_file(model.state_dict(), "lenet5.safetensors")
//! ```
//!
//! Then `cargo run --release --example pytorch_import -- lenet5.safetensors`.
//! Without an argument it loads the LeNet-5 that `scripts/make_fixtures.py`
//! exported from PyTorch into `tests/fixtures`, and compares with PyTorch's
//! own output.

use cnn::ndarray::{Array2, Array4};

// Printed by `scripts/cnn_from_torch.py` for the nn.Sequential: module i of
// the Sequential is layer i after `input`, where its weights are read from.
cnn::cnn! {
    pub struct Lenet5 {
        input 32x32x1;
        conv 1 -> 6 k5;       // 0: 28x28x6
        tanh;                 // 1
        avgpool k2;           // 2: 14x14x6
        conv 6 -> 16 k5;      // 3: 10x10x16
        tanh;                 // 4
        avgpool k2;           // 5: 5x5x16
        flatten;              // 6: 400, C,H,W in PyTorch: permuted on load
        dense 400 -> 120;     // 7
        tanh;                 // 8
        dense 120 -> 84;      // 9
        tanh;                 // 10
        dense 84 -> 10;       // 11
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The input batch and PyTorch's output that came with the fixture.
fn fixture_io() -> Result<(Array4<f32>, Array2<f32>), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(format!("{FIXTURES}/lenet5.io.safetensors"))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)?;
    let read = |key: &str| -> Result<(Vec<usize>, Vec<f32>), safetensors::SafeTensorError> {
        let t = file.tensor(key)?;
        Ok((
            t.shape().to_vec(),
            t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        ))
    };
    let ((xs, x), (ys, y)) = (read("input")?, read("output")?);
    Ok((Array4::from_shape_vec((xs[0], xs[1], xs[2], xs[3]), x)?, Array2::from_shape_vec((ys[0], ys[1]), y)?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argument = std::env::args().nth(1);
    let path = argument.clone().unwrap_or_else(|| format!("{FIXTURES}/lenet5.safetensors"));
    let net = Lenet5::load_pytorch(&path)?;
    println!("loaded {path}\n{}", Lenet5::summary());
    if argument.is_some() {
        let logits = net.forward(Array4::zeros((1, 32, 32, 1)).view())?;
        println!("logits of a blank image: {logits}");
        return Ok(());
    }
    let (x, pytorch) = fixture_io()?;
    let ours = net.forward(x.view())?;
    let worst = ours.iter().zip(&pytorch).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("PyTorch: {}\ncnn:     {}", pytorch.row(0), ours.row(0));
    println!("largest difference over {} logits: {worst:.2e}", ours.len());
    Ok(())
}
