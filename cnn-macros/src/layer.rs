//! The arithmetic of one layer on the shape coming in: its op, its output
//! shape, its parameter count and the arithmetic the summary shows, or the
//! error at the option or layer at fault. The walk over items is in `check`.

use cnn_shape::{Activation, Axis, ConvGeometry, Op, Rounding, Shape, product};

use crate::ast::{Act, ActKind};
use crate::ctxt::{From, Site};
use crate::diagnose;
use crate::spec::{ConvSpec, Padding, PoolSpec, Spec};

/// The shape coming into a layer and where it came from.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub shape: Shape,
    pub from: &'a From,
}

/// The runtime's activation: the slope's default filled in.
pub fn activation(act: Act) -> Activation {
    match act.kind {
        ActKind::Relu => Activation::Relu,
        ActKind::Relu6 => Activation::Relu6,
        ActKind::Tanh => Activation::Tanh,
        ActKind::Sigmoid => Activation::Sigmoid,
        ActKind::Silu => Activation::Silu,
        ActKind::Softmax => Activation::Softmax,
        ActKind::LeakyRelu => Activation::LeakyRelu(act.alpha.unwrap_or(0.01) as f32),
    }
}

/// What one layer gives: its op, output shape, parameters and arithmetic.
pub struct Outcome {
    pub op: Op,
    pub output: Shape,
    pub params: usize,
    pub arithmetic: String,
}

pub type StepError = (Site, String);

pub fn step(spec: &Spec, cur: Input<'_>, i: usize) -> Result<Outcome, StepError> {
    let layer = Site::Layer(i);
    let same = |op| Ok(Outcome { op, output: cur.shape, params: 0, arithmetic: String::new() });
    match spec {
        Spec::Input(..) => Err((layer, "`input` comes once, as the first layer".into())),
        Spec::Conv(c) => conv_step(c, cur, i),
        Spec::Pool(p) => pool_step(p, cur, i),
        Spec::GlobalPool { max } => {
            let keyword = if *max { "globalmaxpool" } else { "globalavgpool" };
            let Shape::Hwc(h, w, c) = cur.shape else {
                return Err((layer, diagnose::needs_spatial(keyword, cur.shape, cur.from)));
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
                return Err((layer, diagnose::dense_needs_flatten(cur.shape, cur.from, *outputs)));
            };
            if let Some((factors, j)) = inputs {
                let stated = product(factors);
                if stated != Some(n) {
                    return Err((
                        Site::Option(i, *j),
                        diagnose::wrong_dense_inputs(factors, stated, n, cur.from, *outputs),
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
        Spec::Upsample(sh, sw) => {
            let Shape::Hwc(h, w, c) = cur.shape else {
                return Err((layer, diagnose::needs_spatial("upsample", cur.shape, cur.from)));
            };
            let (oh, ow) = match (h.checked_mul(*sh), w.checked_mul(*sw)) {
                (Some(oh), Some(ow)) => (oh, ow),
                _ => return Err((layer, format!("`upsample` of {h}x{w}x{c} overflows usize"))),
            };
            let arithmetic = if (h, sh) == (w, sw) {
                format!("{h}*{sh} = {oh}")
            } else {
                format!("h: {h}*{sh} = {oh}; w: {w}*{sw} = {ow}")
            };
            Ok(Outcome {
                op: Op::Upsample { height: *sh, width: *sw },
                output: Shape::Hwc(oh, ow, c),
                params: 0,
                arithmetic,
            })
        }
        Spec::Act(act) => same(Op::Act(activation(*act))),
    }
}

fn conv_step(c: &ConvSpec, cur: Input<'_>, i: usize) -> Result<Outcome, StepError> {
    let Shape::Hwc(h, w, cin) = cur.shape else {
        return Err((Site::Layer(i), diagnose::needs_spatial("conv", cur.shape, cur.from)));
    };
    if let Some((stated, j)) = c.cin
        && stated != cin
    {
        return Err((Site::Option(i, j), diagnose::wrong_conv_channels(stated, cur.shape, cur.from)));
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
            let message = diagnose::bad_window("conv", cur.shape, cur.from, results, &fixes);
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

fn pool_step(p: &PoolSpec, cur: Input<'_>, i: usize) -> Result<Outcome, StepError> {
    let keyword = if p.max { "maxpool" } else { "avgpool" };
    let Shape::Hwc(h, w, c) = cur.shape else {
        return Err((Site::Layer(i), diagnose::needs_spatial(keyword, cur.shape, cur.from)));
    };
    let (height, width) = p.axes(h, w);
    let (oh, ow) = match (Axis::new(height, p.rounding), Axis::new(width, p.rounding)) {
        (Ok(oh), Ok(ow)) => (oh, ow),
        (rh, rw) => {
            let fixes = diagnose::pool_fixes(p, h, w);
            let results = [(height, rh.map(|a| a.output)), (width, rw.map(|a| a.output))];
            let message = diagnose::bad_window(keyword, cur.shape, cur.from, results, &fixes);
            return Err((Site::Layer(i), message));
        }
    };
    let op =
        if p.max { Op::MaxPool { height: oh, width: ow } } else { Op::AvgPool { height: oh, width: ow } };
    let arithmetic = diagnose::arithmetic(&height, &width, p.rounding);
    Ok(Outcome { op, output: Shape::Hwc(oh.output, ow.output, c), params: 0, arithmetic })
}
