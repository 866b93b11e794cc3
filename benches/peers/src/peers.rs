//! candle and tract on the workloads, from `peers.py`'s files.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use cnn::ndarray::ArrayD;
use tract_onnx::prelude::*;

use crate::{WORKLOADS, median_ms, read_tensor, record};

/// The largest difference relative to the largest value, as the check.
fn check(engine: &str, name: &str, actual: &[f32], expected: &ArrayD<f32>) {
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = actual.iter().zip(expected.iter()).fold(0.0f32, |m, (a, e)| m.max((a - e).abs() / scale.max(e.abs())));
    assert_eq!(actual.len(), expected.len(), "{engine} {name}: output length");
    assert!(worst < 1e-4, "{engine} {name}: outputs differ by {worst:e} relative");
}

/// The `nn.Sequential` of a workload in candle, weights by module index.
struct CandleNet {
    layers: Vec<Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>>,
}

impl CandleNet {
    fn load(spec: &str, weights: &Path) -> CandleNet {
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu).unwrap();
        let mut layers: Vec<Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>> = Vec::new();
        for (i, line) in spec.split(';').enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let param = |k: &str| tensors.get(&format!("{i}.{k}")).cloned();
            layers.push(match words[0] {
                "conv" => {
                    let (stride, pad): (usize, usize) = (words[3].parse().unwrap(), words[4].parse().unwrap());
                    let config = candle_nn::Conv2dConfig { padding: pad, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None };
                    let conv = candle_nn::Conv2d::new(param("weight").unwrap(), param("bias"), config);
                    Box::new(move |x| conv.forward(x))
                }
                "linear" => {
                    let linear = candle_nn::Linear::new(param("weight").unwrap(), param("bias"));
                    Box::new(move |x| linear.forward(x))
                }
                "maxpool" => Box::new(|x| x.max_pool2d(2)),
                "avgpool" => Box::new(|x| x.avg_pool2d(2)),
                "gap" => Box::new(|x| x.mean_keepdim((2, 3))),
                "flatten" => Box::new(|x| x.flatten_from(1)),
                "relu" => Box::new(|x| x.relu()),
                "tanh" => Box::new(|x| x.tanh()),
                other => panic!("unknown layer {other}"),
            });
        }
        CandleNet { layers }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.clone(), |x, layer| layer(&x).unwrap())
    }
}

pub fn run(dir: &Path) {
    for (name, _, _, spec) in WORKLOADS {
        let torch = dir.join(format!("{name}.torch.safetensors"));
        let io = dir.join(format!("{name}.nchw.safetensors"));
        let (input, expected) = (read_tensor(&io, "input"), read_tensor(&io, "output"));
        let runs = if input.len() > 400_000 { 15 } else { 31 };

        let net = CandleNet::load(spec, &torch);
        let x = Tensor::from_vec(input.iter().copied().collect::<Vec<f32>>(), input.shape(), &Device::Cpu).unwrap();
        let y = net.forward(&x).to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        check("candle", name, &y, &expected);
        record(dir, "candle", name, median_ms(runs, || drop(net.forward(&x))));

        let model = tract_onnx::onnx()
            .model_for_path(dir.join(format!("{name}.onnx")))
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = tract_onnx::prelude::Tensor::from_shape(input.shape(), input.as_slice().unwrap()).unwrap();
        let y = model.run(tvec!(x.clone().into())).unwrap();
        let y: Vec<f32> = y[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        check("tract", name, &y, &expected);
        record(dir, "tract", name, median_ms(runs, || drop(model.run(tvec!(x.clone().into())).unwrap())));
    }
}
