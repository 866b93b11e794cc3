//! The text of `pytorch()`: Python source of an `nn.Module` whose
//! `state_dict` keys and shapes are those `load_pytorch` reads. Sequences
//! become `nn.Sequential`s of named children, blocks small classes whose
//! children are named as PyTorch names them here.

use cnn_shape::{Activation, Axis, ConvGeometry, Op, Rounding, Shape, out_size};

use crate::check::{Plan, Step, StepKind};

const HELPERS: &str = r#"import torch
import torch.nn as nn
from collections import OrderedDict


class Residual(nn.Module):
    """act(body(x) + shortcut(x)); the body's modules are children of the
    block itself, the shortcut one child (the identity without one)."""

    def __init__(self, body, shortcut=None, act=None):
        super().__init__()
        self._body = [name for name, _ in body]
        for name, module in body:
            self.add_module(name, module)
        self._shortcut = shortcut[0] if shortcut is not None else None
        if shortcut is not None:
            self.add_module(*shortcut)
        self._act = (act,)

    def forward(self, x):
        y = x
        for name in self._body:
            y = getattr(self, name)(y)
        y = y + (x if self._shortcut is None else getattr(self, self._shortcut)(x))
        return y if self._act[0] is None else self._act[0](y)


class Concat(nn.Module):
    """act of the branches' outputs joined along channels (or features)."""

    def __init__(self, branches, act=None):
        super().__init__()
        self._branches = [name for name, _ in branches]
        for name, module in branches:
            self.add_module(name, module)
        self._act = (act,)

    def forward(self, x):
        y = torch.cat([getattr(self, name)(x) for name in self._branches], 1)
        return y if self._act[0] is None else self._act[0](y)


class GlobalAvgPool(nn.Module):
    """One mean per channel, flat: AdaptiveAvgPool2d(1) and flatten."""

    def forward(self, x):
        return x.mean((2, 3))


class GlobalMaxPool(nn.Module):
    """One max per channel, flat."""

    def forward(self, x):
        return x.amax((2, 3))
"#;

/// The Python source of class `name`.
pub fn source(name: &str, plan: &Plan) -> String {
    let input = plan.input.map_or_else(String::new, |shape| match shape {
        Shape::Hwc(h, w, c) => format!("input (N, {c}, {h}, {w}), NCHW"),
        Shape::Flat(n) => format!("input (N, {n})"),
    });
    let items = sequence(&plan.steps, 0, "        ");
    format!(
        "{HELPERS}\n\nclass {name}(nn.Sequential):\n    \"\"\"Written by cnn's `{name}::pytorch()`: {input}; its state_dict is what\n    `{name}::load_pytorch` reads.\"\"\"\n\n    def __init__(self):\n        super().__init__({items})\n"
    )
}

/// The path components of a step's PyTorch name.
fn path(step: &Step) -> Vec<&str> {
    step.torch.split('.').collect()
}

/// `OrderedDict([...])` of the steps whose names are `depth` components
/// deep: each step at that depth an item, each run of deeper steps under
/// one name a nested `nn.Sequential`.
fn sequence(steps: &[Step], depth: usize, indent: &str) -> String {
    let inner = format!("{indent}    ");
    let mut items = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let name = path(&steps[i]).get(depth).copied().unwrap_or_default().to_string();
        if path(&steps[i]).len() == depth + 1 {
            items.push(format!("{inner}({name:?}, {}),", module(&steps[i], depth, &inner)));
            i += 1;
            continue;
        }
        let run =
            steps[i..].iter().take_while(|s| path(s).len() > depth + 1 && path(s)[depth] == name).count();
        let nested = sequence(&steps[i..i + run], depth + 1, &inner);
        items.push(format!("{inner}({name:?}, nn.Sequential({nested})),"));
        i += run.max(1);
    }
    if items.is_empty() {
        return "OrderedDict()".into();
    }
    format!("OrderedDict([\n{}\n{indent}])", items.join("\n"))
}

/// A branch of a block, `depth` the block's own depth: its name and items.
fn branch(steps: &[Step], depth: usize, default: String, indent: &str) -> String {
    let name = steps.first().and_then(|s| path(s).get(depth + 1).map(|n| n.to_string())).unwrap_or(default);
    format!("({name:?}, nn.Sequential({}))", sequence(steps, depth + 2, indent))
}

fn module(step: &Step, depth: usize, indent: &str) -> String {
    match &step.kind {
        StepKind::Op(op) => layer(op, step.input),
        StepKind::Residual { body, shortcut, act } => {
            let body = sequence(body, depth + 1, indent);
            let shortcut = match shortcut {
                Some(steps) => branch(steps, depth, "shortcut".into(), indent),
                None => "None".into(),
            };
            format!("Residual(list({body}.items()), {shortcut}, {})", activation_or_none(*act))
        }
        StepKind::Concat { branches, act } => {
            let branches: Vec<String> = branches
                .iter()
                .enumerate()
                .map(|(b, steps)| branch(steps, depth, b.to_string(), indent))
                .collect();
            format!("Concat([{}], {})", branches.join(", "), activation_or_none(*act))
        }
    }
}

fn pair(h: usize, w: usize) -> String {
    format!("({h}, {w})")
}

/// PyTorch rounds window counts down unless `ceil_mode`.
fn ceil_mode(axis: &Axis) -> bool {
    out_size(&axis.window(), Rounding::Floor) != Ok(axis.output)
}

fn layer(op: &Op, input: Shape) -> String {
    match *op {
        Op::Conv { geometry, bias } => {
            let ConvGeometry { height: h, width: w, in_channels, out_channels, groups } = geometry;
            let symmetric = h.pad_before == h.pad_after && w.pad_before == w.pad_after;
            let padding = if symmetric { pair(h.pad_before, w.pad_before) } else { "\"same\"".into() };
            format!(
                "nn.Conv2d({in_channels}, {out_channels}, {}, stride={}, padding={padding}, dilation={}, groups={groups}, bias={})",
                pair(h.kernel, w.kernel),
                pair(h.stride, w.stride),
                pair(h.dilation, w.dilation),
                if bias { "True" } else { "False" }
            )
        }
        Op::Dense { inputs, outputs, bias } => {
            format!("nn.Linear({inputs}, {outputs}, bias={})", if bias { "True" } else { "False" })
        }
        Op::BatchNorm { channels, eps } => {
            let kind = if matches!(input, Shape::Hwc(..)) { "BatchNorm2d" } else { "BatchNorm1d" };
            format!("nn.{kind}({channels}, eps={eps:?})")
        }
        Op::MaxPool { height, width } | Op::AvgPool { height, width } => {
            let kind = if matches!(op, Op::MaxPool { .. }) { "MaxPool2d" } else { "AvgPool2d" };
            let ceil = if ceil_mode(&height) || ceil_mode(&width) { "True" } else { "False" };
            format!(
                "nn.{kind}({}, stride={}, padding={}, ceil_mode={ceil})",
                pair(height.kernel, width.kernel),
                pair(height.stride, width.stride),
                pair(height.pad_before, width.pad_before)
            )
        }
        Op::GlobalAvgPool => "GlobalAvgPool()".into(),
        Op::GlobalMaxPool => "GlobalMaxPool()".into(),
        Op::Flatten => "nn.Flatten()".into(),
        Op::Dropout(p) => format!("nn.Dropout({p:?})"),
        Op::Act(act) => activation(act),
        Op::Upsample { height, width } => {
            format!("nn.Upsample(scale_factor={}, mode=\"nearest\")", pair(height, width))
        }
        Op::Residual { .. } | Op::Concat { .. } => unreachable!("blocks are steps of their own"),
    }
}

fn activation(act: Activation) -> String {
    match act {
        Activation::Relu => "nn.ReLU()".into(),
        Activation::Relu6 => "nn.ReLU6()".into(),
        Activation::Tanh => "nn.Tanh()".into(),
        Activation::Sigmoid => "nn.Sigmoid()".into(),
        Activation::Silu => "nn.SiLU()".into(),
        Activation::Softmax => "nn.Softmax(dim=1)".into(),
        Activation::LeakyRelu(alpha) => format!("nn.LeakyReLU({alpha:?})"),
    }
}

fn activation_or_none(act: Option<Activation>) -> String {
    act.map_or_else(|| "None".into(), activation)
}
