//! 2-D convolution: im2col tile by tile, each tile one GEMM per group.

use ndarray::{Array1, Array4, ArrayView4, Ix1, Ix4};

use crate::gemm::{self, MatMut, MatRef};
use crate::im2col::im2col_tile;
use crate::init::{self, InitRng};
use crate::window::Axis;

/// How many bytes of im2col panel one tile may fill: it should stay in L2.
const TILE_BYTES: usize = 256 * 1024;

/// Where a convolution's windows fall, and how channels are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub height: Axis,
    pub width: Axis,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// Rows of the weight matrix: `kh * kw * cin / groups`.
    pub fn patch_len(&self) -> usize {
        self.height.kernel * self.width.kernel * (self.in_channels / self.groups)
    }

    /// A 1x1, stride 1, unpadded, ungrouped convolution: a plain GEMM on the input.
    fn is_pointwise(&self) -> bool {
        let plain = |a: &Axis| a.kernel == 1 && a.stride == 1 && a.pad_before == 0 && a.pad_after == 0;
        plain(&self.height) && plain(&self.width) && self.groups == 1
    }
}

/// A 2-D convolution, `nn.Conv2d`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[KH, KW, CIN/G, COUT]`: read as a `[KH*KW*CIN/G, COUT]` matrix, the
    /// weight of output channel `o` in group `o / (COUT/G)`.
    pub weight: Array4<f32>,
    /// `[COUT]`, or none for `nobias`.
    pub bias: Option<Array1<f32>>,
    geometry: ConvGeometry,
}

impl Conv2d {
    /// A convolution initialised as PyTorch does.
    pub fn new(geometry: ConvGeometry, bias: bool, rng: &mut InitRng) -> Conv2d {
        let g = geometry;
        let shape = Ix4(g.height.kernel, g.width.kernel, g.in_channels / g.groups, g.out_channels);
        let fan_in = g.patch_len();
        let weight = init::uniform(shape, fan_in, rng);
        let bias = bias.then(|| init::uniform(Ix1(g.out_channels), fan_in, rng));
        Conv2d { weight, bias, geometry }
    }

    /// A convolution with the given weights, `[KH, KW, CIN/G, COUT]` and `[COUT]`.
    ///
    /// # Panics
    ///
    /// If their shapes do not fit the geometry.
    pub fn from_parts(geometry: ConvGeometry, weight: Array4<f32>, bias: Option<Array1<f32>>) -> Conv2d {
        let g = geometry;
        let expected = [g.height.kernel, g.width.kernel, g.in_channels / g.groups, g.out_channels];
        assert_eq!(weight.shape(), expected, "conv weight shape");
        assert!(bias.as_ref().is_none_or(|b| b.len() == g.out_channels), "conv bias length");
        Conv2d { weight, bias, geometry }
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// Convolves a batch `(N, H, W, CIN)` into `(N, OH, OW, COUT)`.
    ///
    /// # Panics
    ///
    /// If the input or the weights do not have the geometry's shape.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Array4<f32> {
        let g = &self.geometry;
        let (h, w) = (g.height, g.width);
        assert_eq!(&x.shape()[1..], &[h.input, w.input, g.in_channels], "conv input shape");
        assert_eq!(
            self.weight.shape(),
            &[h.kernel, w.kernel, g.in_channels / g.groups, g.out_channels],
            "conv weight shape"
        );
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        let x = x.as_slice().expect("standard layout is contiguous");
        let weight = self.weight.as_standard_layout();
        let weight = weight.as_slice().expect("standard layout is contiguous");
        let cout = g.out_channels;
        let rows = n * h.output * w.output;
        let mut out = vec![0.0f32; rows * cout];

        if g.is_pointwise() {
            let a = MatRef::row_major(x, rows, g.in_channels);
            let b = MatRef::row_major(weight, g.in_channels, cout);
            gemm::sgemm(1.0, a, b, 0.0, MatMut::row_major(&mut out, rows, cout));
            self.add_bias(&mut out);
        } else {
            let patch = g.patch_len();
            let cout_g = cout / g.groups;
            let tile_rows = (TILE_BYTES / (4 * patch)).clamp(1, rows.max(1));
            let mut col = vec![0.0f32; tile_rows * patch];
            for start in (0..rows).step_by(tile_rows) {
                let end = (start + tile_rows).min(rows);
                let tile_len = end - start;
                let col = &mut col[..tile_len * patch];
                let out_tile = &mut out[start * cout..end * cout];
                for group in 0..g.groups {
                    im2col_tile(x, g, group, start..end, col);
                    let a = MatRef::row_major(col, tile_len, patch);
                    let b = MatRef {
                        data: &weight[group * cout_g..],
                        rows: patch,
                        cols: cout_g,
                        row_stride: cout,
                        col_stride: 1,
                    };
                    let c = MatMut {
                        data: &mut out_tile[group * cout_g..],
                        rows: tile_len,
                        cols: cout_g,
                        row_stride: cout,
                        col_stride: 1,
                    };
                    gemm::sgemm(1.0, a, b, 0.0, c);
                }
                self.add_bias(out_tile);
            }
        }
        Array4::from_shape_vec((n, h.output, w.output, cout), out).expect("output length is n*oh*ow*cout")
    }

    fn add_bias(&self, out: &mut [f32]) {
        if let Some(bias) = &self.bias {
            for pixel in out.chunks_exact_mut(bias.len()) {
                for (v, b) in pixel.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
    }
}
