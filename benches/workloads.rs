//! The six workloads of the speed issue, in GFLOP/s (2 x multiply-adds of
//! conv and dense layers), each beside `matrixmultiply::sgemm` alone on the
//! GEMMs of its convolutions (M = N*OH*OW, K = KH*KW*CIN/G, N = COUT/G).
//!
//! `cargo bench --bench workloads`; threads follow `RAYON_NUM_THREADS`.

use std::hint::black_box;

use cnn::Network;
use cnn::layers::{Conv2d, Dense};
use cnn::ndarray::Array4;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

cnn::cnn! {
    pub struct W1 { input 32x32x3; conv 32 k7 s2 floor relu; flatten; dense 10; }
    pub struct W2 {
        input 32x32x3; conv 32 k3 relu; maxpool 2; conv 64 k3 relu; maxpool 2 floor; conv 64 k3 relu;
        flatten; dense 64 relu; dense 10;
    }
    pub struct W3 {
        input 32x32x1; conv 6 k5 tanh; avgpool 2; conv 16 k5 tanh; avgpool 2; flatten;
        dense 120 tanh; dense 84 tanh; dense 10;
    }
    pub struct W4 {
        input 28x28x1; conv 8 k5 s2 p2 floor relu; conv 16 k3 s2 p1 floor relu; conv 32 k3 s2 p1 relu;
        conv 32 k3 s2 p1 floor relu; globalavgpool; dense 10;
    }
    pub struct W5 { input 56x56x64; conv 64 k3 p1 nobias; }
    pub struct W6 { input 224x224x3; conv 64 k3 p1 relu; }
}

/// (M, K, N) of a convolution's GEMMs on a batch, and how many there are (groups).
fn conv_gemm(conv: &Conv2d, batch: usize) -> (usize, usize, usize) {
    let g = conv.geometry();
    (batch * g.height.output * g.width.output, g.patch_len(), g.out_channels / g.groups)
}

fn dense_macs(dense: &Dense, batch: usize) -> usize {
    batch * dense.weight().len()
}

fn input<N: Network>(batch: usize) -> Array4<f32> {
    let cnn::Shape::Hwc(h, w, c) = N::INPUT else { unreachable!() };
    Array4::from_shape_fn((batch, h, w, c), |(n, y, x, ch)| {
        ((n * 7 + y * 3 + x * 5 + ch) % 13) as f32 / 13.0 - 0.5
    })
}

fn bench_workload<N: Network>(
    c: &mut Criterion,
    name: &str,
    batch: usize,
    convs: &[(usize, usize, usize)],
    dense_macs: usize,
) {
    let net = N::new();
    let x = input::<N>(batch);
    let conv_macs: usize = convs.iter().map(|(m, k, n)| m * k * n).sum();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(2 * (conv_macs + dense_macs) as u64));
    group.bench_function("cnn forward", |b| b.iter(|| black_box(net.forward(black_box(x.view())).unwrap())));
    // The ceiling: sgemm alone on the same convolution matrices.
    group.throughput(Throughput::Elements(2 * conv_macs as u64));
    let matrices: Vec<_> = convs
        .iter()
        .map(|&(m, k, n)| (m, k, n, vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0.0f32; m * n]))
        .collect();
    let mut matrices = matrices;
    group.bench_function("sgemm alone (convs)", |b| {
        b.iter(|| {
            for (m, k, n, a, bm, cm) in matrices.iter_mut() {
                let (m, k, n) = (*m, *k, *n);
                // SAFETY: a is m x k, bm is k x n, cm is m x n, all row-major and of those lengths.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        bm.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        cm.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
            black_box(&matrices);
        })
    });
    group.finish();
}

fn workloads(c: &mut Criterion) {
    let (n1, n2, n3, n4, n5, n6) = (64, 64, 256, 256, 8, 1);
    let w = W1::new();
    bench_workload::<W1>(c, "W1", n1, &[conv_gemm(&w.conv1, n1)], dense_macs(&w.dense1, n1));
    let w = W2::new();
    let convs = [conv_gemm(&w.conv1, n2), conv_gemm(&w.conv2, n2), conv_gemm(&w.conv3, n2)];
    bench_workload::<W2>(c, "W2", n2, &convs, dense_macs(&w.dense1, n2) + dense_macs(&w.dense2, n2));
    let w = W3::new();
    let dense = dense_macs(&w.dense1, n3) + dense_macs(&w.dense2, n3) + dense_macs(&w.dense3, n3);
    bench_workload::<W3>(c, "W3", n3, &[conv_gemm(&w.conv1, n3), conv_gemm(&w.conv2, n3)], dense);
    let w = W4::new();
    let convs =
        [conv_gemm(&w.conv1, n4), conv_gemm(&w.conv2, n4), conv_gemm(&w.conv3, n4), conv_gemm(&w.conv4, n4)];
    bench_workload::<W4>(c, "W4", n4, &convs, dense_macs(&w.dense1, n4));
    bench_workload::<W5>(c, "W5", n5, &[conv_gemm(&W5::new().conv1, n5)], 0);
    bench_workload::<W6>(c, "W6", n6, &[conv_gemm(&W6::new().conv1, n6)], 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = workloads
}
criterion_main!(benches);
