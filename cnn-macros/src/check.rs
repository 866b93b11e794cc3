//! Walks the layers, works out every shape and gathers every error.
//! No syntax here: layers come in as kinds and option values, errors go out
//! as messages with the index of the layer or option they belong to.

use std::fmt;

use crate::ast::{Act, ActKind, Kind, OptValue, Pair};
use crate::diagnose::{self, From};
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

// ---------------------------------------------------------------------------
// Options to layer specs.

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    Explicit(Pair),
    Same,
}

/// A convolution as written; `*_at` are option indices, for spans and fixes.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    pub cin: Option<(usize, usize)>,
    pub cout: usize,
    pub kernel: Pair,
    pub stride: Pair,
    pub padding: Padding,
    pub padding_at: Option<usize>,
    pub dilation: Pair,
    pub groups: usize,
    pub groups_at: Option<usize>,
    pub bias: bool,
    pub floor: bool,
    pub act: Option<Act>,
}

/// A max or average pool as written.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub max: bool,
    pub kernel: Pair,
    /// `maxpool 2` rather than `maxpool k2`: fixes are written the same way.
    pub bare_kernel: bool,
    pub stride: Pair,
    pub pad: Pair,
    pub pad_at: Option<usize>,
    pub rounding: Rounding,
}

#[derive(Clone, Debug, PartialEq)]
enum Spec {
    Input(usize, usize, usize),
    Conv(ConvSpec),
    Pool(PoolSpec),
    GlobalPool { max: bool },
    Flatten,
    Dense { inputs: Option<(Vec<usize>, usize)>, outputs: usize, bias: bool, act: Option<Act> },
    BatchNorm { eps: f64 },
    Dropout(f64),
    Act(Act),
}

/// Reads one layer's options, reporting repeats, strangers and bad values.
struct Resolver<'a> {
    layer: usize,
    kind: Kind,
    options: &'a [OptInput],
    filled: Vec<(&'static str, usize)>,
    errors: &'a mut Vec<Diagnostic>,
    failed: bool,
}

impl Resolver<'_> {
    fn error(&mut self, site: Site, message: String) {
        self.failed = true;
        self.errors.push(Diagnostic { site, message });
    }

    /// Claims `slot` for option `j`; an error if an earlier option has it.
    fn fill(&mut self, j: usize, slot: &'static str) -> bool {
        if let Some(&(_, first)) = self.filled.iter().find(|(s, _)| *s == slot) {
            let message = format!(
                "`{}` gives the {slot} again, after `{}`: a layer takes one {slot}",
                self.options[j].text, self.options[first].text
            );
            self.error(Site::Option(self.layer, j), message);
            return false;
        }
        self.filled.push((slot, j));
        true
    }

    fn not_taken(&mut self, j: usize) {
        let message = diagnose::not_an_option(self.kind, &self.options[j].text);
        self.error(Site::Option(self.layer, j), message);
    }

    /// Every named part of option `j` is at least `min`.
    fn at_least(&mut self, j: usize, min: usize, parts: &[(&str, usize)]) -> bool {
        for &(part, value) in parts {
            if value < min {
                let message = format!("the {part} in `{}` must be at least {min}", self.options[j].text);
                self.error(Site::Option(self.layer, j), message);
                return false;
            }
        }
        true
    }

    fn pair(&mut self, j: usize, what: &str, (h, w): Pair, min: usize) -> bool {
        if h == w {
            self.at_least(j, min, &[(what, h)])
        } else {
            self.at_least(j, min, &[(&format!("{what} height"), h), (&format!("{what} width"), w)])
        }
    }

    fn missing(&mut self, what: &str) {
        let message = format!("`{}` needs {what}", self.kind.keyword());
        self.error(Site::Layer(self.layer), message);
    }
}

fn resolve(layer: usize, input: &LayerInput, errors: &mut Vec<Diagnostic>) -> Option<Spec> {
    let mut r = Resolver {
        layer,
        kind: input.kind,
        options: &input.options,
        filled: Vec::new(),
        errors,
        failed: false,
    };
    let spec = match input.kind {
        Kind::Input => resolve_input(&mut r),
        Kind::Conv => resolve_conv(&mut r).map(Spec::Conv),
        Kind::MaxPool => resolve_pool(&mut r, true).map(Spec::Pool),
        Kind::AvgPool => resolve_pool(&mut r, false).map(Spec::Pool),
        Kind::GlobalAvgPool => resolve_bare(&mut r, Spec::GlobalPool { max: false }),
        Kind::GlobalMaxPool => resolve_bare(&mut r, Spec::GlobalPool { max: true }),
        Kind::Flatten => resolve_bare(&mut r, Spec::Flatten),
        Kind::Dense => resolve_dense(&mut r),
        Kind::BatchNorm => resolve_batchnorm(&mut r),
        Kind::Dropout => resolve_dropout(&mut r),
        Kind::Act(kind) => resolve_act(&mut r, kind),
    };
    if r.failed { None } else { spec }
}

// input HxWxC
fn resolve_input(r: &mut Resolver) -> Option<Spec> {
    let mut size = None;
    for (j, opt) in r.options.iter().enumerate() {
        match &opt.value {
            OptValue::Sizes(s) if s.len() == 3 => {
                if r.fill(j, "size")
                    && r.at_least(j, 1, &[("height", s[0]), ("width", s[1]), ("channels", s[2])])
                {
                    size = Some(Spec::Input(s[0], s[1], s[2]));
                }
            }
            OptValue::Sizes(_) | OptValue::Number(_) => {
                let message = format!(
                    "`input` takes height x width x channels, e.g. `input 28x28x1`, found `{}`",
                    opt.text
                );
                r.error(Site::Option(r.layer, j), message);
            }
            _ => r.not_taken(j),
        }
    }
    if size.is_none() && !r.failed {
        r.missing("a size, height x width x channels: `input 28x28x1`");
    }
    size
}

// conv [CIN ->] COUT kK [sS] [pP | same | valid] [dD] [gG] [nobias] [floor] [ACT]
fn resolve_conv(r: &mut Resolver) -> Option<ConvSpec> {
    let (mut cin, mut cout, mut kernel) = (None, None, None);
    let mut c = ConvSpec {
        cin: None,
        cout: 0,
        kernel: (0, 0),
        stride: (1, 1),
        padding: Padding::Explicit((0, 0)),
        padding_at: None,
        dilation: (1, 1),
        groups: 1,
        groups_at: None,
        bias: true,
        floor: false,
        act: None,
    };
    for (j, opt) in r.options.iter().enumerate() {
        match &opt.value {
            OptValue::Arrow(f) if f.len() == 1 => {
                if r.fill(j, "input channels") && r.at_least(j, 1, &[("input channels", f[0])]) {
                    cin = Some((f[0], j));
                }
            }
            OptValue::Number(n) => {
                if r.fill(j, "output channels") && r.at_least(j, 1, &[("output channels", *n)]) {
                    cout = Some(*n);
                }
            }
            OptValue::Kernel(k) => {
                if r.fill(j, "kernel") && r.pair(j, "kernel", *k, 1) {
                    kernel = Some(*k);
                }
            }
            OptValue::Stride(s) => {
                if r.fill(j, "stride") && r.pair(j, "stride", *s, 1) {
                    c.stride = *s;
                }
            }
            OptValue::Pad(p) => {
                if r.fill(j, "padding") {
                    (c.padding, c.padding_at) = (Padding::Explicit(*p), Some(j));
                }
            }
            OptValue::Same => {
                if r.fill(j, "padding") {
                    (c.padding, c.padding_at) = (Padding::Same, Some(j));
                }
            }
            OptValue::Valid => {
                if r.fill(j, "padding") {
                    c.padding_at = Some(j);
                }
            }
            OptValue::Dilation(d) => {
                if r.fill(j, "dilation") && r.pair(j, "dilation", *d, 1) {
                    c.dilation = *d;
                }
            }
            OptValue::Groups(g) => {
                if r.fill(j, "groups") && r.at_least(j, 1, &[("groups", *g)]) {
                    (c.groups, c.groups_at) = (*g, Some(j));
                }
            }
            OptValue::NoBias => c.bias = !r.fill(j, "bias"),
            OptValue::Floor => c.floor = r.fill(j, "rounding"),
            OptValue::Act(a) => {
                if r.fill(j, "activation") && check_act(r, j, *a) {
                    c.act = Some(*a);
                }
            }
            OptValue::Arrow(_) => {
                let message =
                    format!("`{}`: a conv states its input channels as one number, e.g. `3 -> 32`", opt.text);
                r.error(Site::Option(r.layer, j), message);
            }
            _ => r.not_taken(j),
        }
    }
    if r.failed {
        return None;
    }
    match (cout, kernel) {
        (Some(cout), Some(kernel)) => Some(ConvSpec { cin, cout, kernel, ..c }),
        (None, _) => {
            r.missing("the number of output channels, e.g. `conv 32 k3`");
            None
        }
        (_, None) => {
            r.missing("a kernel size, e.g. `k3` or `k3x5`");
            None
        }
    }
}

fn check_act(r: &mut Resolver, j: usize, act: Act) -> bool {
    match act.alpha {
        Some(alpha) if !alpha.is_finite() => {
            let message = format!("the slope in `{}` must be a finite number", r.options[j].text);
            r.error(Site::Option(r.layer, j), message);
            false
        }
        _ => true,
    }
}

// maxpool [K] [kK] [sS] [pP] [floor | ceil], and avgpool alike
fn resolve_pool(r: &mut Resolver, max: bool) -> Option<PoolSpec> {
    let (mut kernel, mut stride) = (None, None);
    let mut p = PoolSpec {
        max,
        kernel: (0, 0),
        bare_kernel: false,
        stride: (0, 0),
        pad: (0, 0),
        pad_at: None,
        rounding: Rounding::Exact,
    };
    for (j, opt) in r.options.iter().enumerate() {
        let bare = match &opt.value {
            OptValue::Number(n) => Some((*n, *n)),
            OptValue::Sizes(s) if s.len() == 2 => Some((s[0], s[1])),
            _ => None,
        };
        match &opt.value {
            _ if bare.is_some() => {
                let k = bare.unwrap_or_default();
                if r.fill(j, "kernel") && r.pair(j, "kernel", k, 1) {
                    (kernel, p.bare_kernel) = (Some(k), true);
                }
            }
            OptValue::Kernel(k) => {
                if r.fill(j, "kernel") && r.pair(j, "kernel", *k, 1) {
                    kernel = Some(*k);
                }
            }
            OptValue::Stride(s) => {
                if r.fill(j, "stride") && r.pair(j, "stride", *s, 1) {
                    stride = Some(*s);
                }
            }
            OptValue::Pad(pad) => {
                if r.fill(j, "padding") {
                    (p.pad, p.pad_at) = (*pad, Some(j));
                }
            }
            OptValue::Floor => {
                if r.fill(j, "rounding") {
                    p.rounding = Rounding::Floor;
                }
            }
            OptValue::Ceil => {
                if r.fill(j, "rounding") {
                    p.rounding = Rounding::Ceil;
                }
            }
            _ => r.not_taken(j),
        }
    }
    if r.failed {
        return None;
    }
    let Some(kernel) = kernel else {
        r.missing("a kernel size, e.g. `maxpool 2`".replace("maxpool", r.kind.keyword()).as_str());
        return None;
    };
    let pool = PoolSpec { kernel, stride: stride.unwrap_or(kernel), ..p };
    // PyTorch: "pad should be at most half of effective kernel size".
    if let Some(j) = pool.pad_at {
        let (ph, pw) = pool.pad;
        if ph > kernel.0 / 2 || pw > kernel.1 / 2 {
            let message = diagnose::pool_padding_too_large(r.kind, &r.options[j].text, pool.pad, kernel);
            r.error(Site::Option(r.layer, j), message);
            return None;
        }
    }
    Some(pool)
}

fn resolve_bare(r: &mut Resolver, spec: Spec) -> Option<Spec> {
    for j in 0..r.options.len() {
        r.not_taken(j);
    }
    Some(spec)
}

// dense [IN ->] OUT [nobias] [ACT]
fn resolve_dense(r: &mut Resolver) -> Option<Spec> {
    let (mut inputs, mut outputs, mut bias, mut act) = (None, None, true, None);
    for (j, opt) in r.options.iter().enumerate() {
        match &opt.value {
            OptValue::Arrow(factors) => {
                let positive = factors.iter().all(|&f| f >= 1);
                if r.fill(j, "input size") && (positive || r.at_least(j, 1, &[("input size", 0)])) {
                    inputs = Some((factors.clone(), j));
                }
            }
            OptValue::Number(n) => {
                if r.fill(j, "output size") && r.at_least(j, 1, &[("output size", *n)]) {
                    outputs = Some(*n);
                }
            }
            OptValue::NoBias => bias = !r.fill(j, "bias"),
            OptValue::Act(a) => {
                if r.fill(j, "activation") && check_act(r, j, *a) {
                    act = Some(*a);
                }
            }
            _ => r.not_taken(j),
        }
    }
    match outputs {
        Some(outputs) if !r.failed => Some(Spec::Dense { inputs, outputs, bias, act }),
        None if !r.failed => {
            r.missing("the number of outputs, e.g. `dense 10` or `dense 400 -> 120`");
            None
        }
        _ => None,
    }
}

// batchnorm [EPS]
fn resolve_batchnorm(r: &mut Resolver) -> Option<Spec> {
    let mut eps = 1e-5;
    for (j, opt) in r.options.iter().enumerate() {
        match opt.value {
            OptValue::Float(e) if e > 0.0 && e.is_finite() => {
                eps = if r.fill(j, "epsilon") { e } else { eps }
            }
            OptValue::Float(_) | OptValue::Number(_) => {
                let message = format!(
                    "the epsilon of `batchnorm` is a positive float such as `1e-3`, found `{}`",
                    opt.text
                );
                r.error(Site::Option(r.layer, j), message);
            }
            _ => r.not_taken(j),
        }
    }
    Some(Spec::BatchNorm { eps })
}

// dropout P
fn resolve_dropout(r: &mut Resolver) -> Option<Spec> {
    let mut p = None;
    for (j, opt) in r.options.iter().enumerate() {
        let value = match opt.value {
            OptValue::Float(v) => v,
            OptValue::Number(n) => n as f64,
            _ => {
                r.not_taken(j);
                continue;
            }
        };
        if !(0.0..1.0).contains(&value) {
            let message = format!("the probability of `dropout` must be in 0 <= P < 1, found `{}`", opt.text);
            r.error(Site::Option(r.layer, j), message);
        } else if r.fill(j, "probability") {
            p = Some(value);
        }
    }
    if p.is_none() && !r.failed {
        r.missing("a probability, e.g. `dropout 0.5`");
    }
    p.map(Spec::Dropout)
}

// relu, tanh, sigmoid, softmax, leakyrelu [ALPHA]
fn resolve_act(r: &mut Resolver, kind: ActKind) -> Option<Spec> {
    let mut act = Act { kind, alpha: None };
    for (j, opt) in r.options.iter().enumerate() {
        match opt.value {
            OptValue::Float(alpha) if kind == ActKind::LeakyRelu => {
                if r.fill(j, "slope") && check_act(r, j, Act { kind, alpha: Some(alpha) }) {
                    act.alpha = Some(alpha);
                }
            }
            _ => r.not_taken(j),
        }
    }
    Some(Spec::Act(act))
}

// ---------------------------------------------------------------------------
// The walk.

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
    if cin % c.groups != 0 || c.cout % c.groups != 0 {
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
