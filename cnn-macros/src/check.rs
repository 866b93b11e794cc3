//! Walks the layers, works out every shape and gathers every error.
//! No syntax here: layers come in as kinds and option values, errors go out
//! as messages with the index of the layer or option they belong to.

use std::fmt;

use crate::ast::{Act, ActKind, Kind, OptValue};
use crate::diagnose::{self, From};
use crate::resolve::{ConvSpec, Padding, PoolSpec, Spec, resolve};
use crate::shape::{self, Rounding, Window};

/// A layer as the check sees it.
pub struct LayerInput {
    pub kind: Kind,
    pub label: Option<String>,
    pub options: Vec<OptInput>,
    pub source: String,
}

pub struct OptInput {
    pub value: OptValue,
    pub text: String,
}

/// What an error points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    Body,
    Layer(usize),
    Option(usize, usize),
}

#[derive(Debug)]
pub struct Diagnostic {
    pub site: Site,
    pub message: String,
}

/// The shape of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Hwc(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    /// Values in one image; `None` past `usize`.
    pub fn checked_len(self) -> Option<usize> {
        match self {
            Shape::Hwc(h, w, c) => shape::product(&[h, w, c]),
            Shape::Flat(n) => Some(n),
        }
    }

    /// Values in one image, saturating: for totals in messages and tables.
    pub fn len(self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    pub fn channels(self) -> usize {
        match self {
            Shape::Hwc(_, _, c) => c,
            Shape::Flat(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Hwc(h, w, c) => write!(f, "{h}x{w}x{c}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// The network as far as its shapes could be worked out.
pub struct Plan {
    pub input: Option<Shape>,
    pub steps: Vec<Step>,
    pub errors: Vec<Diagnostic>,
}

/// One runtime layer; a fused activation is a step of its own.
pub struct Step {
    /// The field name for a layer with parameters, else the label or keyword.
    pub name: String,
    pub op: Op,
    pub output: Shape,
    pub params: usize,
    /// How the output shape came about, for `summary()`.
    pub arithmetic: String,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(ConvOp),
    MaxPool(AxisOp, AxisOp),
    AvgPool(AxisOp, AxisOp),
    GlobalAvgPool,
    GlobalMaxPool,
    /// `from_spatial` is false for the no-op flatten of a flat input.
    Flatten {
        from_spatial: bool,
    },
    Dense {
        inputs: usize,
        outputs: usize,
        bias: bool,
    },
    BatchNorm {
        channels: usize,
        eps: f64,
    },
    Dropout(f64),
    Act(ActKind, f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvOp {
    pub height: AxisOp,
    pub width: AxisOp,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub bias: bool,
}

/// One axis of a window with its worked-out output size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisOp {
    pub window: Window,
    pub ceil: bool,
    pub output: usize,
}

/// The shape flowing between layers and where it came from.
struct Current {
    shape: Shape,
    from: From,
}

/// Field names: the label, else the kind and its ordinal (`conv2`, `bn1`).
#[derive(Default)]
struct Names {
    counts: Vec<(&'static str, usize)>,
    taken: Vec<String>,
}

impl Names {
    /// The field of a layer with parameters; `None` for one without.
    fn field(&mut self, label: Option<&str>, op: &Op) -> Option<String> {
        let prefix = match op {
            Op::Conv(_) => "conv",
            Op::Dense { .. } => "dense",
            Op::BatchNorm { .. } => "bn",
            _ => return None,
        };
        let ordinal = match self.counts.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counts.push((prefix, 1));
                1
            }
        };
        Some(label.map_or_else(|| format!("{prefix}{ordinal}"), str::to_string))
    }

    fn claim(&mut self, field: &str) -> Result<(), String> {
        if self.taken.iter().any(|t| t == field) {
            return Err(format!(
                "the field name `{field}` is taken by an earlier layer: give this one another label, e.g. `{field}b: ...`"
            ));
        }
        self.taken.push(field.to_string());
        Ok(())
    }
}

/// What one layer gives: its op, output shape, parameters and arithmetic.
struct Outcome {
    op: Op,
    output: Shape,
    params: usize,
    arithmetic: String,
}

pub fn check(layers: &[Option<LayerInput>]) -> Plan {
    let mut plan = Plan { input: None, steps: Vec::new(), errors: Vec::new() };
    if layers.is_empty() {
        let message = "a network needs layers, starting with `input HxWxC`, e.g. `input 28x28x1; conv 8 k3; flatten; dense 10`";
        plan.errors.push(Diagnostic { site: Site::Body, message: message.into() });
        return plan;
    }
    let mut current: Option<Current> = None;
    let mut inferring = true;
    let mut names = Names::default();
    for (i, layer) in layers.iter().enumerate() {
        let Some(layer) = layer else {
            inferring = false;
            continue;
        };
        let spec = resolve(i, layer, &mut plan.errors);
        let is_input = layer.kind == Kind::Input;
        if i == 0 && !is_input {
            plan.errors
                .push(Diagnostic { site: Site::Layer(0), message: diagnose::missing_input(&layer.source) });
            inferring = false;
        } else if i > 0 && is_input {
            let message = "`input` comes once, as the first layer".to_string();
            plan.errors.push(Diagnostic { site: Site::Layer(i), message });
            inferring = false;
        }
        let Some(spec) = spec.filter(|_| inferring) else {
            inferring = false;
            continue;
        };
        let from = From { layer: i + 1, source: layer.source.clone(), breakdown: None };
        if let Spec::Input(h, w, c) = spec {
            if Shape::Hwc(h, w, c).checked_len().is_none() {
                let message = format!("an input of {h}x{w}x{c} has more values than usize counts");
                plan.errors.push(Diagnostic { site: Site::Layer(i), message });
                inferring = false;
                continue;
            }
            plan.input = Some(Shape::Hwc(h, w, c));
            current = Some(Current { shape: Shape::Hwc(h, w, c), from });
            continue;
        }
        let Some(cur) = &current else { continue };
        let outcome = step(&spec, cur, i).and_then(|outcome| match outcome.output.checked_len() {
            Some(_) => Ok(outcome),
            None => {
                let message = format!(
                    "the output of this layer, {}, has more values than usize counts",
                    outcome.output
                );
                Err((Site::Layer(i), message))
            }
        });
        match outcome {
            Ok(outcome) => {
                let name = names.field(layer.label.as_deref(), &outcome.op);
                if let Some(Err(message)) = name.as_deref().map(|field| names.claim(field)) {
                    plan.errors.push(Diagnostic { site: Site::Layer(i), message });
                    inferring = false;
                    continue;
                }
                let breakdown = match (&outcome.op, cur.shape) {
                    (Op::Flatten { from_spatial: true }, Shape::Hwc(h, w, c)) => {
                        Some(format!("{h}*{w}*{c} = {}", outcome.output.len()))
                    }
                    (Op::Flatten { .. } | Op::Dropout(_) | Op::Act(..) | Op::BatchNorm { .. }, _) => {
                        cur.from.breakdown.clone()
                    }
                    _ => None,
                };
                let act = fused_act(&spec);
                let output = outcome.output;
                plan.steps.push(Step {
                    name: name.unwrap_or_else(|| {
                        layer.label.clone().unwrap_or_else(|| layer.kind.keyword().into())
                    }),
                    op: outcome.op,
                    output,
                    params: outcome.params,
                    arithmetic: outcome.arithmetic,
                    source: layer.source.clone(),
                });
                if let Some(act) = act {
                    plan.steps.push(act_step(act, output));
                }
                current = Some(Current { shape: output, from: From { breakdown, ..from } });
            }
            Err(message) => {
                plan.errors.push(Diagnostic { site: message.0, message: message.1 });
                inferring = false;
            }
        }
    }
    plan
}

fn fused_act(spec: &Spec) -> Option<Act> {
    match spec {
        Spec::Conv(c) => c.act,
        Spec::Dense { act, .. } => *act,
        _ => None,
    }
}

fn act_step(act: Act, shape: Shape) -> Step {
    let alpha = act.alpha.unwrap_or(0.01);
    let source = match act.alpha {
        Some(alpha) => format!("{} {alpha:?}", act.kind.keyword()),
        None => act.kind.keyword().to_string(),
    };
    Step {
        name: act.kind.keyword().into(),
        op: Op::Act(act.kind, alpha),
        output: shape,
        params: 0,
        arithmetic: String::new(),
        source,
    }
}

type StepError = (Site, String);

fn step(spec: &Spec, cur: &Current, i: usize) -> Result<Outcome, StepError> {
    let layer = Site::Layer(i);
    let same = |op| Ok(Outcome { op, output: cur.shape, params: 0, arithmetic: String::new() });
    match spec {
        Spec::Input(..) => unreachable!("handled by the walk"),
        Spec::Conv(c) => conv_step(c, cur, i),
        Spec::Pool(p) => pool_step(p, cur, i),
        Spec::GlobalPool { max } => {
            let keyword = if *max { "globalmaxpool" } else { "globalavgpool" };
            let Shape::Hwc(h, w, c) = cur.shape else {
                return Err((layer, diagnose::needs_spatial(keyword, cur.shape, &cur.from)));
            };
            let op = if *max { Op::GlobalMaxPool } else { Op::GlobalAvgPool };
            let what = if *max { "max" } else { "mean" };
            Ok(Outcome {
                op,
                output: Shape::Flat(c),
                params: 0,
                arithmetic: format!("{what} over {h}x{w}, {c} channels"),
            })
        }
        Spec::Flatten => match cur.shape {
            Shape::Hwc(h, w, c) => {
                let n = shape::product(&[h, w, c])
                    .ok_or((layer, format!("`flatten` of {h}x{w}x{c} overflows usize")))?;
                let arithmetic = format!("{h}*{w}*{c} = {n}");
                Ok(Outcome {
                    op: Op::Flatten { from_spatial: true },
                    output: Shape::Flat(n),
                    params: 0,
                    arithmetic,
                })
            }
            Shape::Flat(_) => same(Op::Flatten { from_spatial: false }),
        },
        Spec::Dense { inputs, outputs, bias, .. } => {
            let Shape::Flat(n) = cur.shape else {
                return Err((layer, diagnose::dense_needs_flatten(cur.shape, &cur.from, *outputs)));
            };
            if let Some((factors, j)) = inputs {
                let stated = shape::product(factors);
                if stated != Some(n) {
                    return Err((
                        Site::Option(i, *j),
                        diagnose::wrong_dense_inputs(factors, stated, n, &cur.from, *outputs),
                    ));
                }
            }
            let params =
                n.checked_mul(*outputs).and_then(|p| p.checked_add(if *bias { *outputs } else { 0 }));
            let params = params
                .ok_or((layer, format!("`dense {n} -> {outputs}` has more parameters than usize counts")))?;
            let op = Op::Dense { inputs: n, outputs: *outputs, bias: *bias };
            Ok(Outcome { op, output: Shape::Flat(*outputs), params, arithmetic: String::new() })
        }
        Spec::BatchNorm { eps } => {
            let channels = cur.shape.channels();
            let op = Op::BatchNorm { channels, eps: *eps };
            Ok(Outcome {
                op,
                output: cur.shape,
                params: channels.saturating_mul(2),
                arithmetic: String::new(),
            })
        }
        Spec::Dropout(p) => same(Op::Dropout(*p)),
        Spec::Act(act) => same(Op::Act(act.kind, act.alpha.unwrap_or(0.01))),
    }
}

fn conv_step(c: &ConvSpec, cur: &Current, i: usize) -> Result<Outcome, StepError> {
    let Shape::Hwc(h, w, cin) = cur.shape else {
        return Err((Site::Layer(i), diagnose::needs_spatial("conv", cur.shape, &cur.from)));
    };
    if let Some((stated, j)) = c.cin
        && stated != cin
    {
        return Err((Site::Option(i, j), diagnose::wrong_conv_channels(stated, cur.shape, &cur.from)));
    }
    if cin % c.groups != 0 || !c.cout.is_multiple_of(c.groups) {
        let site = c.groups_at.map_or(Site::Layer(i), |j| Site::Option(i, j));
        return Err((site, diagnose::bad_groups(c.groups, cin, c.cout)));
    }
    if c.padding == Padding::Same && c.stride != (1, 1) {
        let site = c.padding_at.map_or(Site::Layer(i), |j| Site::Option(i, j));
        return Err((site, diagnose::same_needs_stride_one(c)));
    }
    let (height, width) = conv_axes(c, h, w);
    let rounding = if c.floor { Rounding::Floor } else { Rounding::Exact };
    let (oh, ow) = match (shape::out_size(&height, rounding), shape::out_size(&width, rounding)) {
        (Ok(oh), Ok(ow)) => (oh, ow),
        (rh, rw) => {
            let fixes = diagnose::conv_fixes(c, h, w);
            let message =
                diagnose::bad_window("conv", cur.shape, &cur.from, [(height, rh), (width, rw)], &fixes);
            return Err((Site::Layer(i), message));
        }
    };
    let kernel = shape::product(&[c.kernel.0, c.kernel.1, cin / c.groups, c.cout]);
    let params = kernel.and_then(|k| k.checked_add(if c.bias { c.cout } else { 0 }));
    let params =
        params.ok_or((Site::Layer(i), "this conv has more parameters than usize counts".to_string()))?;
    let op = Op::Conv(ConvOp {
        height: AxisOp { window: height, ceil: false, output: oh },
        width: AxisOp { window: width, ceil: false, output: ow },
        in_channels: cin,
        out_channels: c.cout,
        groups: c.groups,
        bias: c.bias,
    });
    let arithmetic = diagnose::arithmetic(&height, &width, rounding);
    Ok(Outcome { op, output: Shape::Hwc(oh, ow, c.cout), params, arithmetic })
}

/// The windows of a convolution on an `h x w` input; `same` pads
/// `d(k - 1)` in all, the odd cell after, as PyTorch.
pub fn conv_axes(c: &ConvSpec, h: usize, w: usize) -> (Window, Window) {
    let axis = |input, kernel: usize, stride, pad, dilation: usize| {
        let (pad_before, pad_after) = match c.padding {
            Padding::Explicit(_) => (pad, pad),
            Padding::Same => {
                let total = dilation.saturating_mul(kernel - 1);
                (total / 2, total - total / 2)
            }
        };
        Window { input, kernel, stride, pad_before, pad_after, dilation }
    };
    let (ph, pw) = match c.padding {
        Padding::Explicit(p) => p,
        Padding::Same => (0, 0),
    };
    (axis(h, c.kernel.0, c.stride.0, ph, c.dilation.0), axis(w, c.kernel.1, c.stride.1, pw, c.dilation.1))
}

/// The windows of a pool on an `h x w` input.
pub fn pool_axes(p: &PoolSpec, h: usize, w: usize) -> (Window, Window) {
    let axis = |input, kernel, stride, pad| Window {
        input,
        kernel,
        stride,
        pad_before: pad,
        pad_after: pad,
        dilation: 1,
    };
    (axis(h, p.kernel.0, p.stride.0, p.pad.0), axis(w, p.kernel.1, p.stride.1, p.pad.1))
}

fn pool_step(p: &PoolSpec, cur: &Current, i: usize) -> Result<Outcome, StepError> {
    let keyword = if p.max { "maxpool" } else { "avgpool" };
    let Shape::Hwc(h, w, c) = cur.shape else {
        return Err((Site::Layer(i), diagnose::needs_spatial(keyword, cur.shape, &cur.from)));
    };
    let (height, width) = pool_axes(p, h, w);
    let (oh, ow) = match (shape::out_size(&height, p.rounding), shape::out_size(&width, p.rounding)) {
        (Ok(oh), Ok(ow)) => (oh, ow),
        (rh, rw) => {
            let fixes = diagnose::pool_fixes(p, h, w);
            let message =
                diagnose::bad_window(keyword, cur.shape, &cur.from, [(height, rh), (width, rw)], &fixes);
            return Err((Site::Layer(i), message));
        }
    };
    let ceil = p.rounding == Rounding::Ceil;
    let axes = (AxisOp { window: height, ceil, output: oh }, AxisOp { window: width, ceil, output: ow });
    let op = if p.max { Op::MaxPool(axes.0, axes.1) } else { Op::AvgPool(axes.0, axes.1) };
    let arithmetic = diagnose::arithmetic(&height, &width, p.rounding);
    Ok(Outcome { op, output: Shape::Hwc(oh, ow, c), params: 0, arithmetic })
}

/// For each step, the HxWxC its flat input was flattened from, if it was:
/// PyTorch orders those features C, H, W, this crate H, W, C.
pub fn flat_origins(plan: &Plan) -> Vec<Option<(usize, usize, usize)>> {
    let mut shape = plan.input;
    let mut origin = None;
    let mut origins = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        origins.push(origin);
        origin = match (&step.op, shape) {
            (Op::Flatten { from_spatial: true }, Some(Shape::Hwc(h, w, c))) => Some((h, w, c)),
            (Op::Flatten { .. } | Op::Act(..) | Op::Dropout(_) | Op::BatchNorm { .. }, _) => origin,
            _ => None,
        };
        shape = Some(step.output);
    }
    origins
}
