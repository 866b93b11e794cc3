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
//! PyTorch the prefix is the module's name: its label, or its index in the
//! `nn.Sequential`. Both come from the plan.

use std::path::{Path, PathBuf};

use cnn_shape::{Node, Op, Param, Plan};
use ndarray::{Array1, Array2, Array4};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use crate::Error;
use crate::infer::Layer;
use crate::layers::{BatchNorm, Conv2d, Dense};

/// Which layout and which keys a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// This crate's own: keys by field name, weights as the kernels use them.
    Cnn,
    /// `safetensors.torch.save_file(model.state_dict())` of an `nn.Sequential`.
    PyTorch,
}

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

/// Where a node's tensors are in a file, and what its flat input was
/// flattened from.
fn param_of(node: &Node) -> Param {
    node.param.expect("the macro gives every layer with parameters its place")
}

fn key(param: Param, layout: Layout, name: &str) -> String {
    match layout {
        Layout::Cnn => format!("{}.{name}", param.field),
        Layout::PyTorch => format!("{}.{name}", param.torch),
    }
}

impl Tensors<'_> {
    /// The values of tensor `name`, which must have `shape` and a float type.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
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

    /// A `[len]` tensor; in PyTorch's layout after `flatten`, features
    /// come in C, H, W order.
    fn vector(&mut self, param: Param, name: &str, len: usize) -> Result<Array1<f32>, Error> {
        let values = self.take(&key(param, self.layout, name), &[len])?;
        Ok(match (self.layout, param.flat_from) {
            (Layout::PyTorch, Some(hwc)) => Array1::from_shape_fn(len, |i| values[chw_index(i, hwc)]),
            _ => Array1::from(values),
        })
    }
}

impl Conv2d {
    /// The convolution of a plan node, its tensors from `tensors`.
    #[doc(hidden)]
    pub fn load(tensors: &mut Tensors<'_>, node: &Node) -> Result<Conv2d, Error> {
        let Op::Conv { geometry: g, bias } = node.op else { unreachable!("a conv node") };
        let param = param_of(node);
        let [kh, kw, ci, co] = g.weight_shape();
        let name = key(param, tensors.layout, "weight");
        let weight = match tensors.layout {
            Layout::Cnn => Array4::from_shape_vec((kh, kw, ci, co), tensors.take(&name, &[kh, kw, ci, co])?),
            Layout::PyTorch => {
                Array4::from_shape_vec((co, ci, kh, kw), tensors.take(&name, &[co, ci, kh, kw])?)
                    .map(|oihw| oihw.permuted_axes([2, 3, 1, 0]))
            }
        }
        .expect("the length was checked with the shape");
        let bias = if bias { Some(tensors.vector(param, "bias", co)?) } else { None };
        Ok(Conv2d::from_parts(g, weight, bias).expect("the shapes were checked against the file"))
    }
}

impl Dense {
    /// The dense layer of a plan node, its tensors from `tensors`; its
    /// input's PyTorch order is undone if it came from `flatten`.
    #[doc(hidden)]
    pub fn load(tensors: &mut Tensors<'_>, node: &Node) -> Result<Dense, Error> {
        let Op::Dense { inputs, outputs, bias } = node.op else { unreachable!("a dense node") };
        let param = param_of(node);
        let name = key(param, tensors.layout, "weight");
        let weight = match tensors.layout {
            Layout::Cnn => {
                Array2::from_shape_vec((inputs, outputs), tensors.take(&name, &[inputs, outputs])?)
                    .expect("the length was checked with the shape")
            }
            Layout::PyTorch => {
                let rows = tensors.take(&name, &[outputs, inputs])?;
                let column = |i| param.flat_from.map_or(i, |hwc| chw_index(i, hwc));
                Array2::from_shape_fn((inputs, outputs), |(i, o)| rows[o * inputs + column(i)])
            }
        };
        let unflattened = Param { flat_from: None, ..param };
        let bias = if bias { Some(tensors.vector(unflattened, "bias", outputs)?) } else { None };
        Ok(Dense::from_parts(weight, bias).expect("the shapes were checked against the file"))
    }
}

impl BatchNorm {
    /// The batchnorm of a plan node, its tensors and statistics from `tensors`.
    #[doc(hidden)]
    pub fn load(tensors: &mut Tensors<'_>, node: &Node) -> Result<BatchNorm, Error> {
        let Op::BatchNorm { channels, eps } = node.op else { unreachable!("a batchnorm node") };
        let param = param_of(node);
        let mut bn = BatchNorm::new(channels, eps);
        let loaded = [
            tensors.vector(param, "weight", channels)?,
            tensors.vector(param, "bias", channels)?,
            tensors.vector(param, "running_mean", channels)?,
            tensors.vector(param, "running_var", channels)?,
        ];
        let [weight, bias, mean, var] = loaded;
        let set = bn
            .set_weight(weight)
            .and(bn.set_bias(bias))
            .and(bn.set_running_mean(mean))
            .and(bn.set_running_var(var));
        set.expect("the shapes were checked against the file");
        Ok(bn)
    }
}

/// Feature `i` in H, W, C order is feature `chw_index(i)` in C, H, W order.
pub(crate) fn chw_index(i: usize, (h, w, c): (usize, usize, usize)) -> usize {
    let (pixel, channel) = (i / c, i % c);
    channel * h * w + pixel
}

/// Saves the layers of `plan` to `path`, in this crate's layout.
pub fn save(plan: &Plan, layers: &[Layer<'_>], path: &Path) -> Result<(), Error> {
    fn add(nodes: &[Node], layers: &[Layer<'_>], writer: &mut TensorWriter) {
        for node in nodes {
            if let Some(param) = node.param {
                writer.layer(param.field, layers[param.slot]);
            }
            node.branches().for_each(|nodes| add(nodes, layers, writer));
        }
    }
    let mut writer = TensorWriter::default();
    add(plan.nodes, layers, &mut writer);
    writer.write(path)
}

/// Tensors to be written to a file, in this crate's layout.
#[derive(Default)]
struct TensorWriter {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl TensorWriter {
    fn add<'a>(&mut self, name: String, shape: &[usize], values: impl IntoIterator<Item = &'a f32>) {
        let bytes = values.into_iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name, shape.to_vec(), bytes));
    }

    fn layer(&mut self, field: &str, layer: Layer<'_>) {
        let mut add =
            |name: &str, shape: &[usize], values: &[f32]| self.add(format!("{field}.{name}"), shape, values);
        match layer {
            Layer::Conv2d(conv) => {
                add("weight", conv.weight().shape(), conv.weight().as_slice().expect("standard layout"));
                if let Some(bias) = conv.bias() {
                    add("bias", bias.shape(), bias.as_slice().expect("standard layout"));
                }
            }
            Layer::Dense(dense) => {
                add("weight", dense.weight().shape(), dense.weight().as_slice().expect("standard layout"));
                if let Some(bias) = dense.bias() {
                    add("bias", bias.shape(), bias.as_slice().expect("standard layout"));
                }
            }
            Layer::BatchNorm(bn) => {
                let tensors = [
                    ("weight", bn.weight()),
                    ("bias", bn.bias()),
                    ("running_mean", bn.running_mean()),
                    ("running_var", bn.running_var()),
                ];
                for (name, values) in tensors {
                    add(name, values.shape(), values.as_slice().expect("standard layout"));
                }
            }
        }
    }

    /// Writes the file, replacing any file at `path`.
    fn write(self, path: &Path) -> Result<(), Error> {
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
