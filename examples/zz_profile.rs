use cnn::layers::*;
use cnn::ndarray::Array4;
use std::time::Instant;

fn median(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..25)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[0]
}

fn main() {
    let mut rng = cnn::init::rng(0);
    for (name, n, h, w, cin, cout, k, s, p) in [
        ("W1 conv", 64, 32, 32, 3, 32, 7, 2, 0),
        ("W3 conv1", 256, 32, 32, 1, 6, 5, 1, 0),
        ("W3 conv2", 256, 14, 14, 6, 16, 5, 1, 0),
        ("W2 conv1", 64, 32, 32, 3, 32, 3, 1, 0),
        ("W2 conv2", 64, 15, 15, 32, 64, 3, 1, 0),
        ("W5", 8, 56, 56, 64, 64, 3, 1, 1),
        ("W6", 1, 224, 224, 3, 64, 3, 1, 1),
    ] {
        let g = ConvGeometry {
            height: Axis::new(h, k, s, p, p, 1, true && false),
            width: Axis::new(w, k, s, p, p, 1, false),
            in_channels: cin,
            out_channels: cout,
            groups: 1,
        };
        let conv = Conv2d::new(g, true, &mut rng);
        let x = Array4::<f32>::from_elem((n, h, w, cin), 0.5);
        let xs = x.as_slice().unwrap();
        let mut out = vec![0.0; n * g.output_len()];
        let mut scratch = Vec::new();
        let epi = Epilogue::new(conv.bias.as_ref().map(|b| b.as_slice().unwrap()), None, None);
        let t_conv = median(|| conv.run(xs, &mut out, &mut scratch, &epi));
        let m = n * g.height.output * g.width.output;
        let kk = g.patch_len();
        let a = vec![0.5f32; m * kk];
        let b = vec![0.25f32; kk * cout];
        let mut c = vec![0.0f32; m * cout];
        let t_gemm = median(|| unsafe {
            matrixmultiply::sgemm(
                m,
                kk,
                cout,
                1.0,
                a.as_ptr(),
                kk as isize,
                1,
                b.as_ptr(),
                cout as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                cout as isize,
                1,
            )
        });
        let mut vals = out.clone();
        let t_tanh = median(|| Activation::Tanh.apply(&mut vals, cout));
        let t_relu = median(|| Activation::Relu.apply(&mut vals, cout));
        let pool = MaxPool2d::new(
            Axis::new(g.height.output, 2, 2, 0, 0, 1, false),
            Axis::new(g.width.output, 2, 2, 0, 0, 1, false),
        );
        let mut pout = vec![0.0; n * pool.height.output * pool.width.output * cout];
        let t_pool = median(|| pool.run(&out, cout, &mut pout));
        let gf = 2.0 * (m * kk * cout) as f64 / 1e6;
        println!(
            "{name:10} M={m:7} K={kk:4} N={cout:3}  conv {t_conv:7.3} ms ({:5.1} GF/s)  sgemm {t_gemm:7.3} ms ({:5.1})  tanh {t_tanh:.3} relu {t_relu:.3} maxpool {t_pool:.3}",
            gf / t_conv,
            gf / t_gemm
        );
    }
}
