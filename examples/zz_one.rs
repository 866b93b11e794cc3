use cnn::layers::*;
use cnn::ndarray::Array4;
fn main() {
    let mut rng = cnn::init::rng(0);
    let (n, h, w, cin, cout, k) = (64, 32, 32, 3, 32, 3);
    let g = ConvGeometry {
        height: Axis::new(h, k, 1, 0, 0, 1, false),
        width: Axis::new(w, k, 1, 0, 0, 1, false),
        in_channels: cin,
        out_channels: cout,
        groups: 1,
    };
    let conv = Conv2d::new(g, true, &mut rng);
    let x = Array4::<f32>::from_elem((n, h, w, cin), 0.5);
    let mut out = vec![0.0; n * g.output_len()];
    let mut scratch = Vec::new();
    let epi = Epilogue::new(conv.bias.as_ref().map(|b| b.as_slice().unwrap()), None, None);
    for _ in 0..3 {
        conv.run(x.as_slice().unwrap(), &mut out, &mut scratch, &epi);
    }
}
