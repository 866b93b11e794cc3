//! A layer's options to its spec: repeats, options the layer does not take,
//! missing sizes and values out of range are reported here, with the index
//! of the option at fault. No syntax here either.

use cnn_shape::Rounding;

use crate::ast::{Act, ActKind, Kind, OptValue, Pair};
use crate::ctxt::{Ctxt, LayerInput, OptInput, Site};
use crate::diagnose;
use crate::spec::{ConvSpec, Padding, PoolSpec, Spec};

/// Reads one layer's options, reporting repeats, strangers and bad values.
struct Resolver<'a> {
    layer: usize,
    kind: Kind,
    options: &'a [OptInput],
    filled: Vec<(&'static str, usize)>,
    cx: &'a mut Ctxt,
    failed: bool,
}

impl Resolver<'_> {
    fn error(&mut self, site: Site, message: String) {
        self.failed = true;
        self.cx.error(site, message);
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

pub fn resolve(layer: usize, input: &LayerInput, cx: &mut Ctxt) -> Option<Spec> {
    let mut r =
        Resolver { layer, kind: input.kind, options: &input.options, filled: Vec::new(), cx, failed: false };
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
        Kind::Upsample => resolve_upsample(&mut r),
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

// upsample S, upsample SxT
fn resolve_upsample(r: &mut Resolver) -> Option<Spec> {
    let mut factors = None;
    for (j, opt) in r.options.iter().enumerate() {
        let pair = match &opt.value {
            OptValue::Number(n) => (*n, *n),
            OptValue::Sizes(s) if s.len() == 2 => (s[0], s[1]),
            _ => {
                r.not_taken(j);
                continue;
            }
        };
        if r.fill(j, "factor") && r.pair(j, "factor", pair, 1) {
            factors = Some(pair);
        }
    }
    if factors.is_none() && !r.failed {
        r.missing("a whole factor, e.g. `upsample 2` or `upsample 2x1`");
    }
    factors.map(|(h, w)| Spec::Upsample(h, w))
}

// relu, relu6, tanh, sigmoid, silu, softmax, leakyrelu [ALPHA]
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
