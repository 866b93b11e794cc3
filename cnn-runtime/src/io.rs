//! Weights in safetensors files: this crate's own layout (`save`, `load`)
//! and PyTorch's `state_dict` (`load_pytorch`).
//!
//! | tensor | `save` / `load` | PyTorch |
//! |---|---|---|
//! | conv weight | `[KH, KW, CIN/G, COUT]` | `[COUT, CIN/G, KH, KW]` |
//! | dense weight | `[IN, OUT]` | `[OUT, IN]` |
//! | after `flatten` | features in H, W, C order | features in C, H, W order |
//! | biases, batchnorm | `[C]` | `[C]` (`num_batches_tracked` ignored) |
//!
//! Keys are `{field}.weight`, `.bias`, `.running_mean`, `.running_var`; for
//! PyTorch the field is the module's index in the `nn.Sequential`.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array4};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use crate::Error;
use crate::layers::{BatchNorm, Conv2d, ConvGeometry, Dense};

/// Which layout and which keys a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// This crate's own: keys by field name, weights as the kernels use them.
    Cnn,
    /// `safetensors.torch.save_file(model.state_dict())` of an `nn.Sequential`.
    PyTorch,
}

/// Where a layer's tensors are: its field name and its `nn.Sequential` index.
#[derive(Clone, Copy, Debug)]
pub struct Prefix {
    pub field: &'static str,
    pub module: usize,
}

/// The HxWxC a flat input was flattened from, if it was: PyTorch orders
/// those features C, H, W.
pub type FlatFrom = Option<(usize, usize, usize)>;

/// A weights file read whole into memory.
pub struct WeightFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl WeightFile {
    pub fn read(path: &Path) -> Result<WeightFile, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
        Ok(WeightFile { path: path.into(), bytes })
    }

    /// The tensors of the file, its header checked.
    pub fn tensors(&self, layout: Layout) -> Result<Tensors<'_>, Error> {
        let path = self.path.clone();
        if self.bytes.is_empty() {
            return Err(Error::EmptyFile { path });
        }
        let file = SafeTensors::deserialize(&self.bytes).map_err(|e| match e {
            SafeTensorError::HeaderTooSmall
            | SafeTensorError::InvalidHeaderLength
            | SafeTensorError::MetadataIncompleteBuffer => {
                Error::TruncatedFile { path: path.clone(), reason: e.to_string() }
            }
            _ => Error::CorruptFile { path: path.clone(), reason: e.to_string() },
        })?;
        Ok(Tensors { path, file, layout, taken: Vec::new() })
    }
}

/// The tensors of one file, taken one by one; what is left is unexpected.
pub struct Tensors<'a> {
    path: PathBuf,
    file: SafeTensors<'a>,
    layout: Layout,
    taken: Vec<String>,
}

fn key(prefix: Prefix, layout: Layout, name: &str) -> String {
    match layout {
        Layout::Cnn => format!("{}.{name}", prefix.field),
        Layout::PyTorch => format!("{}.{name}", prefix.module),
    }
}

impl Tensors<'_> {
    /// The values of tensor `name`, which must have `shape` and a float type.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
        let path = || self.path.clone();
        let view = self.file.tensor(name).map_err(|_| Error::MissingTensor {
            path: path(),
            name: name.into(),
            expected: shape.to_vec(),
        })?;
        if view.shape() != shape {
            let (expected, found) = (shape.to_vec(), view.shape().to_vec());
            return Err(Error::TensorShape { path: path(), name: name.into(), expected, found });
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => {
                data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
                .collect(),
            Dtype::F16 => {
                data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => {
                return Err(Error::TensorDtype {
                    path: path(),
                    name: name.into(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        self.taken.push(name.into());
        Ok(values)
    }

    /// Checks that every tensor of the file was taken.
    pub fn finish(self) -> Result<(), Error> {
        let pytorch = self.layout == Layout::PyTorch;
        let mut names = self.file.names();
        names.sort();
        // PyTorch's batchnorm saves a step counter that inference has no use for.
        let known =
            |n: &&str| self.taken.iter().any(|t| t == n) || (pytorch && n.ends_with(".num_batches_tracked"));
        match names.into_iter().find(|n| !known(n)) {
            Some(name) => Err(Error::UnexpectedTensor { path: self.path, name: name.into() }),
            None => Ok(()),
        }
    }

    fn vector(
        &mut self,
        prefix: Prefix,
        name: &str,
        len: usize,
        flat_from: FlatFrom,
    ) -> Result<Array1<f32>, Error> {
        let values = self.take(&key(prefix, self.layout, name), &[len])?;
        Ok(match (self.layout, flat_from) {
            (Layout::PyTorch, Some(hwc)) => Array1::from_shape_fn(len, |i| values[chw_index(i, hwc)]),
            _ => Array1::from(values),
        })
    }

    /// A convolution's weights.
    pub fn conv(&mut self, prefix: Prefix, geometry: ConvGeometry, bias: bool) -> Result<Conv2d, Error> {
        let g = geometry;
        let (kh, kw, ci, co) = (g.height.kernel, g.width.kernel, g.in_channels / g.groups, g.out_channels);
        let name = key(prefix, self.layout, "weight");
        let weight = match self.layout {
            Layout::Cnn => Array4::from_shape_vec((kh, kw, ci, co), self.take(&name, &[kh, kw, ci, co])?),
            Layout::PyTorch => Array4::from_shape_vec((co, ci, kh, kw), self.take(&name, &[co, ci, kh, kw])?)
                .map(|oihw| oihw.permuted_axes([2, 3, 1, 0]).as_standard_layout().into_owned()),
        }
        .expect("the length was checked with the shape");
        let bias = if bias { Some(self.vector(prefix, "bias", co, None)?) } else { None };
        Ok(Conv2d::from_parts(g, weight, bias))
    }

    /// A dense layer's weights; `flat_from` when its input came from `flatten`.
    pub fn dense(
        &mut self,
        prefix: Prefix,
        (inputs, outputs): (usize, usize),
        bias: bool,
        flat_from: FlatFrom,
    ) -> Result<Dense, Error> {
        let name = key(prefix, self.layout, "weight");
        let weight = match self.layout {
            Layout::Cnn => Array2::from_shape_vec((inputs, outputs), self.take(&name, &[inputs, outputs])?)
                .expect("the length was checked with the shape"),
            Layout::PyTorch => {
                let rows = self.take(&name, &[outputs, inputs])?;
                let column = |i| flat_from.map_or(i, |hwc| chw_index(i, hwc));
                Array2::from_shape_fn((inputs, outputs), |(i, o)| rows[o * inputs + column(i)])
            }
        };
        let bias = if bias { Some(self.vector(prefix, "bias", outputs, None)?) } else { None };
        Ok(Dense { weight, bias })
    }

    /// A batchnorm's weights and running statistics.
    pub fn batchnorm(
        &mut self,
        prefix: Prefix,
        channels: usize,
        eps: f32,
        flat_from: FlatFrom,
    ) -> Result<BatchNorm, Error> {
        Ok(BatchNorm {
            weight: self.vector(prefix, "weight", channels, flat_from)?,
            bias: self.vector(prefix, "bias", channels, flat_from)?,
            running_mean: self.vector(prefix, "running_mean", channels, flat_from)?,
            running_var: self.vector(prefix, "running_var", channels, flat_from)?,
            ..BatchNorm::new(channels, eps)
        })
    }
}

/// Feature `i` in H, W, C order is feature `chw_index(i)` in C, H, W order.
fn chw_index(i: usize, (h, w, c): (usize, usize, usize)) -> usize {
    let (pixel, channel) = (i / c, i % c);
    channel * h * w + pixel
}

/// Tensors to be written to a file, in this crate's layout.
#[derive(Default)]
pub struct TensorWriter {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl TensorWriter {
    pub fn new() -> TensorWriter {
        TensorWriter::default()
    }

    fn add<'a>(&mut self, name: String, shape: &[usize], values: impl IntoIterator<Item = &'a f32>) {
        let bytes = values.into_iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name, shape.to_vec(), bytes));
    }

    pub fn conv(&mut self, field: &str, conv: &Conv2d) {
        self.add(format!("{field}.weight"), conv.weight.shape(), conv.weight.as_standard_layout().iter());
        if let Some(bias) = &conv.bias {
            self.add(format!("{field}.bias"), bias.shape(), bias);
        }
    }

    pub fn dense(&mut self, field: &str, dense: &Dense) {
        self.add(format!("{field}.weight"), dense.weight.shape(), dense.weight.as_standard_layout().iter());
        if let Some(bias) = &dense.bias {
            self.add(format!("{field}.bias"), bias.shape(), bias);
        }
    }

    pub fn batchnorm(&mut self, field: &str, bn: &BatchNorm) {
        for (name, values) in [
            ("weight", &bn.weight),
            ("bias", &bn.bias),
            ("running_mean", &bn.running_mean),
            ("running_var", &bn.running_var),
        ] {
            self.add(format!("{field}.{name}"), values.shape(), values);
        }
    }

    /// Writes the file, replacing any file at `path`.
    pub fn write(self, path: &Path) -> Result<(), Error> {
        let invalid = |e: SafeTensorError| Error::Io {
            path: path.into(),
            source: std::io::Error::other(e.to_string()),
        };
        let views: Vec<(&str, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.as_str(), v))
            })
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        let bytes = safetensors::serialize(views, None).map_err(invalid)?;
        std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.into(), source })
    }
}
