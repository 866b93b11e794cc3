//! ONNX export, with the conventions of a `torch.onnx.export`: input
//! `input` in NCHW with a dynamic batch `N`, output `output` (NCHW if
//! spatial), weights in PyTorch's layout, `Flatten` in C, H, W order (so a
//! dense or batchnorm after it takes PyTorch's feature order), blocks as
//! `Add` and `Concat`, `upsample` as a nearest `Resize`, dropout left out.
//! Opset 17.

#[allow(clippy::all, clippy::pedantic, dead_code)]
mod proto;

use std::path::Path;

use cnn_shape::{Activation, Axis, Node, Op, Plan, Rounding, Shape, out_size};
use prost::Message;
use proto::tensor_shape_proto::{Dimension, dimension};
use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, type_proto,
};

use crate::Error;
use crate::infer::Layer;
use crate::io::chw_index;

const OPSET: i64 = 17;
/// The IR version that opset 17 came with.
const IR_VERSION: i64 = 8;

/// Writes `plan` with the tensors of `layers` to `path` as an ONNX model,
/// through a temporary file beside it: a failed write leaves nothing at `path`.
pub fn save(plan: &Plan, layers: &[Layer<'_>], path: &Path) -> Result<(), Error> {
    let bytes = model(plan, layers).encode_to_vec();
    let io = |source| Error::Io { path: path.into(), source };
    let name = path.file_name().ok_or_else(|| io(std::io::Error::other("the path names no file")))?;
    let temporary = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path)).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io(e)
    })
}

fn model(plan: &Plan, layers: &[Layer<'_>]) -> ModelProto {
    let mut graph = Graph { layers, nodes: Vec::new(), initializers: Vec::new(), names: 0 };
    let last = graph.sequence(plan.nodes, "input".into());
    graph.push("Identity", vec![last], "output".into(), Vec::new());
    let output = plan.nodes.last().map_or(plan.input, |node| node.info.output);
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("cnn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: Some("cnn".into()),
            initializer: graph.initializers,
            input: vec![value_info("input", plan.input)],
            output: vec![value_info("output", output)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float tensor `(N, ...)` of one image of `shape`, in NCHW.
fn value_info(name: &str, shape: Shape) -> ValueInfoProto {
    let dim = |value| Dimension { value: Some(value), ..Default::default() };
    let mut dims = vec![dim(dimension::Value::DimParam("N".into()))];
    let sizes = match shape {
        Shape::Hwc(h, w, c) => vec![c, h, w],
        Shape::Flat(n) => vec![n],
    };
    dims.extend(sizes.into_iter().map(|n| dim(dimension::Value::DimValue(n as i64))));
    let tensor = type_proto::Tensor {
        elem_type: Some(DataType::Float as i32),
        shape: Some(TensorShapeProto { dim: dims }),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

fn ints(name: &str, values: impl IntoIterator<Item = usize>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.into_iter().map(|v| v as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A window's attributes: kernel, strides, pads (begins, then ends).
fn window(height: &Axis, width: &Axis) -> Vec<AttributeProto> {
    vec![
        ints("kernel_shape", [height.kernel, width.kernel]),
        ints("strides", [height.stride, width.stride]),
        ints("pads", [height.pad_before, width.pad_before, height.pad_after, width.pad_after]),
    ]
}

/// Values in this crate's feature order, put in PyTorch's (C, H, W) when
/// they follow a flatten.
fn features(values: &[f32], flat_from: Option<(usize, usize, usize)>) -> Vec<f32> {
    match flat_from {
        Some(hwc) => {
            let mut out = vec![0.0; values.len()];
            values.iter().enumerate().for_each(|(i, &v)| out[chw_index(i, hwc)] = v);
            out
        }
        None => values.to_vec(),
    }
}

struct Graph<'a> {
    layers: &'a [Layer<'a>],
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: usize,
}

impl Graph<'_> {
    fn fresh(&mut self, hint: &str) -> String {
        self.names += 1;
        format!("{hint}_{}", self.names)
    }

    fn push(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        output: String,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: Some(name),
            op_type: Some(op.into()),
            attribute,
            ..Default::default()
        });
        output
    }

    /// A node `op` on `inputs`; returns its output's name.
    fn node(&mut self, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.push(op, inputs, output, attribute)
    }

    fn tensor(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.into()
    }

    /// `nodes` applied to `x`; returns the name of their output.
    fn sequence(&mut self, nodes: &[Node], mut x: String) -> String {
        for node in nodes {
            x = self.one(node, x);
        }
        x
    }

    fn activation(&mut self, act: Activation, x: String) -> String {
        match act {
            Activation::Relu => self.node("Relu", vec![x], Vec::new()),
            Activation::Tanh => self.node("Tanh", vec![x], Vec::new()),
            Activation::Sigmoid => self.node("Sigmoid", vec![x], Vec::new()),
            Activation::Softmax => self.node("Softmax", vec![x], vec![int("axis", 1)]),
            Activation::LeakyRelu(alpha) => self.node("LeakyRelu", vec![x], vec![float("alpha", alpha)]),
            Activation::Relu6 => {
                let (low, high) = (self.fresh("zero"), self.fresh("six"));
                let (low, high) = (self.tensor(&low, &[], vec![0.0]), self.tensor(&high, &[], vec![6.0]));
                self.node("Clip", vec![x, low, high], Vec::new())
            }
            Activation::Silu => {
                let sigmoid = self.node("Sigmoid", vec![x.clone()], Vec::new());
                self.node("Mul", vec![x, sigmoid], Vec::new())
            }
        }
    }

    fn one(&mut self, node: &Node, x: String) -> String {
        let layer = node.param.map(|p| (p, self.layers[p.slot]));
        let key = |suffix: &str| node.param.map_or_else(String::new, |p| format!("{}.{suffix}", p.torch));
        match (node.op, layer) {
            (Op::Conv { geometry: g, .. }, Some((_, Layer::Conv2d(conv)))) => {
                let [kh, kw, ci, co] = g.weight_shape();
                let w = conv.weight();
                // [KH, KW, CIN/G, COUT] -> OIHW.
                let oihw = w.permuted_axes([3, 2, 0, 1]).iter().copied().collect();
                let mut inputs = vec![x, self.tensor(&key("weight"), &[co, ci, kh, kw], oihw)];
                if let Some(bias) = conv.bias() {
                    inputs.push(self.tensor(&key("bias"), &[co], bias.to_vec()));
                }
                let mut attributes = window(&g.height, &g.width);
                attributes.push(ints("dilations", [g.height.dilation, g.width.dilation]));
                attributes.push(int("group", g.groups as i64));
                self.node("Conv", inputs, attributes)
            }
            (Op::Dense { inputs: n, outputs, .. }, Some((param, Layer::Dense(dense)))) => {
                // [IN, OUT] -> PyTorch's [OUT, IN], its columns in C, H, W order after flatten.
                let w = dense.weight();
                let mut rows = vec![0.0; n * outputs];
                for i in 0..n {
                    let column = param.flat_from.map_or(i, |hwc| chw_index(i, hwc));
                    for o in 0..outputs {
                        rows[o * n + column] = w[[i, o]];
                    }
                }
                let mut inputs = vec![x, self.tensor(&key("weight"), &[outputs, n], rows)];
                if let Some(bias) = dense.bias() {
                    inputs.push(self.tensor(&key("bias"), &[outputs], bias.to_vec()));
                }
                self.node("Gemm", inputs, vec![int("transB", 1)])
            }
            (Op::BatchNorm { channels, eps }, Some((param, Layer::BatchNorm(bn)))) => {
                let mut inputs = vec![x];
                let tensors = [
                    ("weight", bn.weight()),
                    ("bias", bn.bias()),
                    ("running_mean", bn.running_mean()),
                    ("running_var", bn.running_var()),
                ];
                for (name, values) in tensors {
                    let values = features(&values.to_vec(), param.flat_from);
                    inputs.push(self.tensor(&key(name), &[channels], values));
                }
                self.node("BatchNormalization", inputs, vec![float("epsilon", eps)])
            }
            (Op::MaxPool { height, width } | Op::AvgPool { height, width }, _) => {
                let ceil = |a: &Axis| out_size(&a.window(), Rounding::Floor) != Ok(a.output);
                let mut attributes = window(&height, &width);
                attributes.push(int("ceil_mode", (ceil(&height) || ceil(&width)) as i64));
                if matches!(node.op, Op::MaxPool { .. }) {
                    self.node("MaxPool", vec![x], attributes)
                } else {
                    attributes.push(int("count_include_pad", 1));
                    self.node("AveragePool", vec![x], attributes)
                }
            }
            (Op::GlobalAvgPool | Op::GlobalMaxPool, _) => {
                let op = if node.op == Op::GlobalAvgPool { "GlobalAveragePool" } else { "GlobalMaxPool" };
                let pooled = self.node(op, vec![x], Vec::new());
                self.node("Flatten", vec![pooled], vec![int("axis", 1)])
            }
            (Op::Flatten, _) => self.node("Flatten", vec![x], vec![int("axis", 1)]),
            (Op::Dropout(_), _) => x,
            (Op::Act(act), _) => self.activation(act, x),
            (Op::Upsample { height, width }, _) => {
                let scales = self.fresh("scales");
                let scales = self.tensor(&scales, &[4], vec![1.0, 1.0, height as f32, width as f32]);
                let attributes = vec![
                    string("mode", "nearest"),
                    string("coordinate_transformation_mode", "asymmetric"),
                    string("nearest_mode", "floor"),
                ];
                self.node("Resize", vec![x, String::new(), scales], attributes)
            }
            (Op::Residual { body, shortcut, act }, _) => {
                let y = self.sequence(body, x.clone());
                let s = match shortcut {
                    Some(nodes) => self.sequence(nodes, x),
                    None => x,
                };
                let sum = self.node("Add", vec![y, s], Vec::new());
                act.map_or(sum.clone(), |act| self.activation(act, sum))
            }
            (Op::Concat { branches, act }, _) => {
                let parts = branches.iter().map(|nodes| self.sequence(nodes, x.clone())).collect();
                let joined = self.node("Concat", parts, vec![int("axis", 1)]);
                act.map_or(joined.clone(), |act| self.activation(act, joined))
            }
            (Op::Conv { .. } | Op::Dense { .. } | Op::BatchNorm { .. }, _) => {
                unreachable!("the plan gives these layers")
            }
        }
    }
}
