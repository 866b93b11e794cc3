//! Walks the layers, works out every shape and gathers every error.
//! No syntax here: layers come in as kinds and option values, errors go out
//! as messages with the index of the layer or option they belong to. After
//! the first error that leaves a shape unknown, later layers still have
//! their options checked, but no shape of theirs is worked out.

use cnn_shape::{Activation, Axis, ConvGeometry, Op, Rounding, Shape, product};

use crate::ast::{Act, ActKind, Kind};
use crate::ctxt::{Ctxt, From, LayerInput, Site};
use crate::diagnose;
use crate::resolve::resolve;
use crate::spec::{ConvSpec, Padding, PoolSpec, Spec};

/// What the check found: the plan the code is generated from.
#[derive(Debug, Default)]
pub struct Plan {
    pub input: Option<Shape>,
    pub steps: Vec<Step>,
}

/// One layer of the plan; a fused activation is a step of its own.
#[derive(Debug)]
pub struct Step {
    pub op: Op,
    pub input: Shape,
    pub output: Shape,
    pub params: usize,
    /// The field name of a layer with parameters, else its label or keyword.
    pub name: String,
    /// The index of the layer it came from; its label, if any, is the field.
    pub layer: usize,
    /// Whether it has a field: a layer with parameters.
    pub has_field: bool,
    /// Its name in PyTorch: the label, else its position in the `nn.Sequential`.
    pub torch: String,
    /// The HxWxC its flat input was flattened from, if it was.
    pub flat_from: Option<(usize, usize, usize)>,
    pub arithmetic: String,
    pub source: String,
}

/// The shape flowing between layers and where it came from.
struct Current {
    shape: Shape,
    from: From,
    flat_from: Option<(usize, usize, usize)>,
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
            Op::Conv { .. } => "conv",
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

type StepError = (Site, String);

pub fn check(layers: &[Option<LayerInput>], cx: &mut Ctxt) -> Plan {
    let mut plan = Plan::default();
    if layers.is_empty() {
        let message = "a network needs layers, starting with `input HxWxC`, e.g. `input 28x28x1; conv 8 k3; flatten; dense 10`";
        cx.error(Site::Body, message);
        return plan;
    }
    let mut names = Names::default();
    let mut current = None;
    for (i, layer) in layers.iter().enumerate() {
        // Every layer's options are checked, whatever came before.
        let Some((layer, spec)) = layer.as_ref().map(|l| (l, resolve(i, l, cx))) else {
            current = None;
            continue;
        };
        current = match (i, spec) {
            (0, Some(Spec::Input(h, w, c))) => input(i, (h, w, c), layer, &mut plan, cx),
            (0, _) if layer.kind != Kind::Input => {
                cx.error(Site::Layer(0), diagnose::missing_input(&layer.source));
                None
            }
            (_, _) if i > 0 && layer.kind == Kind::Input => {
                cx.error(Site::Layer(i), "`input` comes once, as the first layer");
                None
            }
            (_, Some(spec)) => current.and_then(|cur| {
                let next = push_layer(i, layer, &spec, cur, &mut names, &mut plan);
                next.map_err(|(site, message)| cx.error(site, message)).ok()
            }),
            (_, None) => None,
        };
    }
    plan
}

fn input(
    i: usize,
    (h, w, c): (usize, usize, usize),
    layer: &LayerInput,
    plan: &mut Plan,
    cx: &mut Ctxt,
) -> Option<Current> {
    let shape = Shape::Hwc(h, w, c);
    if shape.checked_len().is_none() {
        cx.error(Site::Layer(i), format!("an input of {h}x{w}x{c} has more values than usize counts"));
        return None;
    }
    plan.input = Some(shape);
    let from = From { layer: i + 1, source: layer.source.clone(), breakdown: None };
    Some(Current { shape, from, flat_from: None })
}

/// Works out layer `i`, adds its steps to the plan and gives the shape after it.
fn push_layer(
    i: usize,
    layer: &LayerInput,
    spec: &Spec,
    cur: Current,
    names: &mut Names,
    plan: &mut Plan,
) -> Result<Current, StepError> {
    let outcome = step(spec, &cur, i)?;
    if outcome.output.checked_len().is_none() {
        let message =
            format!("the output of this layer, {}, has more values than usize counts", outcome.output);
        return Err((Site::Layer(i), message));
    }
    let field = names.field(layer.label.as_deref(), &outcome.op);
    if let Some(field) = &field {
        names.claim(field).map_err(|message| (Site::Layer(i), message))?;
    }
    // What a flat size is made of, and what it was flattened from, carry
    // through the layers that keep the shape.
    let keeps_shape = matches!(outcome.op, Op::Flatten | Op::Dropout(_) | Op::Act(_) | Op::BatchNorm { .. });
    let (breakdown, flat_from) = match (&outcome.op, cur.shape) {
        (Op::Flatten, Shape::Hwc(h, w, c)) => {
            (Some(format!("{h}*{w}*{c} = {}", outcome.output.len())), Some((h, w, c)))
        }
        _ if keeps_shape => (cur.from.breakdown.clone(), cur.flat_from),
        _ => (None, None),
    };
    let output = outcome.output;
    let index = plan.steps.len();
    plan.steps.push(Step {
        name: field
            .clone()
            .unwrap_or_else(|| layer.label.clone().unwrap_or_else(|| layer.kind.keyword().into())),
        op: outcome.op,
        input: cur.shape,
        output,
        params: outcome.params,
        layer: i,
        has_field: field.is_some(),
        torch: layer.label.clone().unwrap_or_else(|| index.to_string()),
        flat_from: cur.flat_from,
        arithmetic: outcome.arithmetic,
        source: layer.source.clone(),
    });
    if let Some(act) = fused_act(spec) {
        let index = plan.steps.len();
        plan.steps.push(act_step(act, output, i, index, flat_from));
    }
    let from = From { layer: i + 1, source: layer.source.clone(), breakdown };
    Ok(Current { shape: output, from, flat_from })
}

fn fused_act(spec: &Spec) -> Option<Act> {
    match spec {
        Spec::Conv(c) => c.act,
        Spec::Dense { act, .. } => *act,
        _ => None,
    }
}

/// The runtime's activation: the slope's default filled in.
fn activation(act: Act) -> Activation {
    match act.kind {
        ActKind::Relu => Activation::Relu,
        ActKind::Tanh => Activation::Tanh,
        ActKind::Sigmoid => Activation::Sigmoid,
        ActKind::Softmax => Activation::Softmax,
        ActKind::LeakyRelu => Activation::LeakyRelu(act.alpha.unwrap_or(0.01) as f32),
    }
}

fn act_step(
    act: Act,
    shape: Shape,
    layer: usize,
    index: usize,
    flat_from: Option<(usize, usize, usize)>,
) -> Step {
    let source = match act.alpha {
        Some(alpha) => format!("{} {alpha:?}", act.kind.keyword()),
        None => act.kind.keyword().to_string(),
    };
    Step {
        name: act.kind.keyword().into(),
        op: Op::Act(activation(act)),
        input: shape,
        output: shape,
        params: 0,
        layer,
        has_field: false,
        torch: index.to_string(),
        flat_from,
        arithmetic: String::new(),
        source,
    }
}

fn step(spec: &Spec, cur: &Current, i: usize) -> Result<Outcome, StepError> {
    let layer = Site::Layer(i);
    let same = |op| Ok(Outcome { op, output: cur.shape, params: 0, arithmetic: String::new() });
    match spec {
        Spec::Input(..) => Err((layer, "`input` comes once, as the first layer".into())),
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
                let n = product(&[h, w, c])
                    .ok_or((layer, format!("`flatten` of {h}x{w}x{c} overflows usize")))?;
                let arithmetic = format!("{h}*{w}*{c} = {n}");
                Ok(Outcome { op: Op::Flatten, output: Shape::Flat(n), params: 0, arithmetic })
            }
            Shape::Flat(_) => same(Op::Flatten),
        },
        Spec::Dense { inputs, outputs, bias, .. } => {
            let Shape::Flat(n) = cur.shape else {
                return Err((layer, diagnose::dense_needs_flatten(cur.shape, &cur.from, *outputs)));
            };
            if let Some((factors, j)) = inputs {
                let stated = product(factors);
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
            let op = Op::BatchNorm { channels, eps: *eps as f32 };
            Ok(Outcome {
                op,
                output: cur.shape,
                params: channels.saturating_mul(2),
                arithmetic: String::new(),
            })
        }
        Spec::Dropout(p) => same(Op::Dropout(*p as f32)),
        Spec::Act(act) => same(Op::Act(activation(*act))),
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
    let (height, width) = c.axes(h, w);
    let rounding = if c.floor { Rounding::Floor } else { Rounding::Exact };
    let (oh, ow) = match (Axis::new(height, rounding), Axis::new(width, rounding)) {
        (Ok(oh), Ok(ow)) => (oh, ow),
        (rh, rw) => {
            let fixes = diagnose::conv_fixes(c, h, w);
            let results = [(height, rh.map(|a| a.output)), (width, rw.map(|a| a.output))];
            let message = diagnose::bad_window("conv", cur.shape, &cur.from, results, &fixes);
            return Err((Site::Layer(i), message));
        }
    };
    let kernel = product(&[c.kernel.0, c.kernel.1, cin / c.groups, c.cout]);
    let params = kernel.and_then(|k| k.checked_add(if c.bias { c.cout } else { 0 }));
    let params =
        params.ok_or((Site::Layer(i), "this conv has more parameters than usize counts".to_string()))?;
    let geometry =
        ConvGeometry { height: oh, width: ow, in_channels: cin, out_channels: c.cout, groups: c.groups };
    let arithmetic = diagnose::arithmetic(&height, &width, rounding);
    let output = Shape::Hwc(oh.output, ow.output, c.cout);
    Ok(Outcome { op: Op::Conv { geometry, bias: c.bias }, output, params, arithmetic })
}

fn pool_step(p: &PoolSpec, cur: &Current, i: usize) -> Result<Outcome, StepError> {
    let keyword = if p.max { "maxpool" } else { "avgpool" };
    let Shape::Hwc(h, w, c) = cur.shape else {
        return Err((Site::Layer(i), diagnose::needs_spatial(keyword, cur.shape, &cur.from)));
    };
    let (height, width) = p.axes(h, w);
    let (oh, ow) = match (Axis::new(height, p.rounding), Axis::new(width, p.rounding)) {
        (Ok(oh), Ok(ow)) => (oh, ow),
        (rh, rw) => {
            let fixes = diagnose::pool_fixes(p, h, w);
            let results = [(height, rh.map(|a| a.output)), (width, rw.map(|a| a.output))];
            let message = diagnose::bad_window(keyword, cur.shape, &cur.from, results, &fixes);
            return Err((Site::Layer(i), message));
        }
    };
    let op =
        if p.max { Op::MaxPool { height: oh, width: ow } } else { Op::AvgPool { height: oh, width: ow } };
    let arithmetic = diagnose::arithmetic(&height, &width, p.rounding);
    Ok(Outcome { op, output: Shape::Hwc(oh.output, ow.output, c), params: 0, arithmetic })
}
