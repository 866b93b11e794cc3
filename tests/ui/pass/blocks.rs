// Every block and the new layers, in the item and the expression forms.
cnn::cnn! {
    /// U-Net-like: a skip joined after upsampling.
    pub struct Unet {
        input 16x16x3;
        stem: conv 8 k3 p1 relu;
        concat skip: {} down: { maxpool 2; conv 16 k3 p1 silu; upsample 2 } relu6;
        residual { conv 24 k3 p1; batchnorm } relu;
        head: { conv 2 k1; globalmaxpool };
    }
}

fn main() {
    let net = Unet::new();
    let x = cnn::ndarray::Array4::<f32>::zeros((1, 16, 16, 3));
    assert_eq!(net.forward(x.view()).unwrap().dim(), (1, 2));
    let _ = (net.concat1_down_1.weight(), &net.stem, &net.residual1_0, &net.head_0);
    let expr = cnn::cnn![input 4x4x1; residual { conv 1 k3 p1 }; upsample 2x1; flatten; dense 2];
    let _ = cnn::Network::forward(&expr, cnn::ndarray::Array4::<f32>::zeros((1, 4, 4, 1)).view());
}
