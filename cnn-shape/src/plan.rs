//! The plan of a network: what the macro worked out, layer by layer, and
//! what the runtime walks. Every shape and size in it was computed once, by
//! the macro, with this crate's arithmetic.
//!
//! A plan is a tree: blocks (residuals, concatenations, sequences) hold
//! the nodes of their branches as slices of their own, so a walk over a
//! plan is a walk over `&[Node]` that recurses into blocks.

use crate::{Axis, LayerInfo, Shape};

/// A whole network: its input and its nodes in order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    pub input: Shape,
    pub nodes: &'static [Node],
}

/// One layer of the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The shape of one image coming in.
    pub input: Shape,
    /// Its name, source, output shape and parameter count.
    pub info: LayerInfo,
    /// Where its parameters are, if it has any.
    pub param: Option<Param>,
}

/// What a node does, with every size it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Conv {
        geometry: ConvGeometry,
        bias: bool,
    },
    Dense {
        inputs: usize,
        outputs: usize,
        bias: bool,
    },
    BatchNorm {
        channels: usize,
        eps: f32,
    },
    MaxPool {
        height: Axis,
        width: Axis,
    },
    AvgPool {
        height: Axis,
        width: Axis,
    },
    GlobalAvgPool,
    GlobalMaxPool,
    Flatten,
    Dropout(f32),
    Act(Activation),
    /// Nearest-neighbour upsampling by whole factors.
    Upsample {
        height: usize,
        width: usize,
    },
    /// `act(body(x) + shortcut(x))`; no shortcut is the identity.
    Residual {
        body: &'static [Node],
        shortcut: Option<&'static [Node]>,
        act: Option<Activation>,
    },
    /// `act` of the branches' outputs joined along the last axis, in order;
    /// an empty branch is the identity.
    Concat {
        branches: &'static [&'static [Node]],
        act: Option<Activation>,
    },
}

/// Where a layer with parameters keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its position among the network's layers with parameters, in plan order.
    pub slot: usize,
    /// Its field name, the prefix of its keys in this crate's files
    /// (`conv1`, `layer2_0_downsample_0`).
    pub field: &'static str,
    /// Its PyTorch name, the prefix of its `state_dict` keys (`3`, `fc`,
    /// `layer2.0.downsample.0`).
    pub torch: &'static str,
    /// The HxWxC its flat input was flattened from, if it was: PyTorch
    /// orders those features C, H, W, this crate H, W, C.
    pub flat_from: Option<(usize, usize, usize)>,
}

impl Op {
    /// Whether the layer has tensors of its own.
    pub const fn has_params(&self) -> bool {
        matches!(self, Op::Conv { .. } | Op::Dense { .. } | Op::BatchNorm { .. })
    }
}

impl Node {
    /// The sequences of nodes this one holds: a block's branches, in order,
    /// the shortcut after the body.
    pub fn branches(&self) -> impl Iterator<Item = &'static [Node]> + '_ {
        let (first, rest): (Option<&'static [Node]>, &[&'static [Node]]) = match &self.op {
            Op::Residual { body, shortcut, .. } => (Some(*body), shortcut.as_slice()),
            Op::Concat { branches, .. } => (None, branches),
            _ => (None, &[]),
        };
        first.into_iter().chain(rest.iter().copied())
    }

    /// This node and all the nodes inside it, depth first.
    pub fn size(&self) -> usize {
        1 + self.branches().map(|nodes| nodes.iter().map(Node::size).sum::<usize>()).sum::<usize>()
    }
}

/// An activation function, as a layer or fused after conv and dense.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    /// Over the last axis: channels or features.
    Softmax,
    /// With its negative slope.
    LeakyRelu(f32),
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * sigmoid(x)`.
    Silu,
}

impl Activation {
    /// Its keyword in `cnn!`: `relu`, `leakyrelu`, ...
    pub const fn keyword(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::LeakyRelu(_) => "leakyrelu",
            Activation::Relu6 => "relu6",
            Activation::Silu => "silu",
        }
    }
}

/// Where a convolution's windows fall, and how its channels are grouped.
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
    pub const fn patch_len(&self) -> usize {
        self.height.kernel * self.width.kernel * (self.in_channels / self.groups)
    }

    /// Output values of one image.
    pub const fn output_len(&self) -> usize {
        self.height.output * self.width.output * self.out_channels
    }

    /// Input values of one image.
    pub const fn input_len(&self) -> usize {
        self.height.input * self.width.input * self.in_channels
    }

    /// The weight's shape in this crate's layout, `[KH, KW, CIN/G, COUT]`.
    pub const fn weight_shape(&self) -> [usize; 4] {
        [self.height.kernel, self.width.kernel, self.in_channels / self.groups, self.out_channels]
    }
}
