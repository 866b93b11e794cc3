//! The wording of errors and the fixes they suggest. Every fix is checked
//! with the same arithmetic as the layer, so a suggestion always compiles.

use cnn_shape::{Rounding, Shape, SizeError, Window, out_size};

use crate::ast::{ActKind, Kind};
use crate::ctxt::From;
use crate::spec::{ConvSpec, Padding, PoolSpec};

fn origin(shape: Shape, from: &From) -> String {
    format!("input is {shape} from {from}")
}

/// `a`, `a or b`, `a, b, or c`.
fn either(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{}, or {last}", rest.join(", ")),
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

pub fn layer_list() -> String {
    let words: Vec<&str> = Kind::KEYWORDS.iter().map(|(word, _)| *word).collect();
    format!("help: the layers are {}; the blocks `{{ ... }}`, `residual` and `concat`", words.join(", "))
}

pub fn unknown_layer(word: &str) -> String {
    let blocks = ["residual", "concat", "shortcut"];
    let guess = closest(word, Kind::KEYWORDS.iter().map(|(w, _)| *w).chain(blocks));
    let guess = guess.map(|g| format!("did you mean `{g}`? ")).unwrap_or_default();
    format!("unknown layer `{word}`\nhelp: {guess}{}", layer_list().trim_start_matches("help: "))
}

/// What each layer takes after its keyword, for messages.
fn grammar(kind: Kind) -> &'static str {
    match kind {
        Kind::Input => "input HxWxC",
        Kind::Conv => "conv [CIN ->] COUT kK [sS] [pP | same | valid] [dD] [gG] [nobias] [floor] [ACT]",
        Kind::MaxPool => "maxpool [K] [kK] [sS] [pP] [floor | ceil]",
        Kind::AvgPool => "avgpool [K] [kK] [sS] [pP] [floor | ceil]",
        Kind::Dense => "dense [IN ->] OUT [nobias] [ACT]",
        Kind::BatchNorm => "batchnorm [EPS]",
        Kind::Dropout => "dropout P",
        Kind::Upsample => "upsample S or upsample SxT",
        Kind::Act(ActKind::LeakyRelu) => "leakyrelu [ALPHA]",
        Kind::GlobalAvgPool | Kind::GlobalMaxPool | Kind::Flatten | Kind::Act(_) => "no options",
    }
}

/// Words an option may be, for "did you mean".
fn option_words(kind: Kind) -> &'static [&'static str] {
    const CONV: &[&str] = &[
        "same",
        "valid",
        "nobias",
        "floor",
        "relu",
        "tanh",
        "sigmoid",
        "softmax",
        "leakyrelu",
        "relu6",
        "silu",
    ];
    match kind {
        Kind::Conv => CONV,
        Kind::MaxPool | Kind::AvgPool => &["floor", "ceil"],
        Kind::Dense => &["nobias", "relu", "tanh", "sigmoid", "softmax", "leakyrelu", "relu6", "silu"],
        _ => &[],
    }
}

pub fn unknown_option(kind: Kind, word: &str) -> String {
    let keyword = kind.keyword();
    // `stride2`, `kernel3`, `padding1`: the long names of the short forms.
    let long = [
        ("kernel", 'k'),
        ("stride", 's'),
        ("padding", 'p'),
        ("pad", 'p'),
        ("dilation", 'd'),
        ("groups", 'g'),
    ];
    let guess = long
        .iter()
        .find_map(|&(name, short)| {
            let digits = word.strip_prefix(name)?.trim_start_matches(['=', '_']);
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| format!("{short}{digits}"))
        })
        .or_else(|| closest(word, option_words(kind).iter().copied()).map(str::to_string));
    let guess = guess.map(|g| format!("did you mean `{g}`? ")).unwrap_or_default();
    let sizes = if word == "x" || word.starts_with('x') {
        "; write sizes without spaces, e.g. `28x28x1`"
    } else {
        ""
    };
    format!(
        "unknown option `{word}` for `{keyword}`{sizes}\nhelp: {guess}`{keyword}` takes: {}",
        grammar(kind)
    )
}

pub fn not_an_option(kind: Kind, text: &str) -> String {
    let keyword = kind.keyword();
    let why = match text {
        "ceil" if kind == Kind::Conv => " (only pooling rounds up, as in PyTorch)",
        "same" | "valid" if matches!(kind, Kind::MaxPool | Kind::AvgPool) => " (pooling pads with `pP`)",
        _ if matches!(kind, Kind::MaxPool | Kind::AvgPool) && text.starts_with(['d', 'g']) => {
            " (pooling has no dilation or groups here)"
        }
        _ => "",
    };
    format!("`{text}` is not an option of `{keyword}`{why}\nhelp: `{keyword}` takes: {}", grammar(kind))
}

pub fn missing_input(source: &str) -> String {
    format!("the first layer must be `input HxWxC`, e.g. `input 28x28x1`, found `{source}`")
}

pub fn pool_padding_too_large(
    kind: Kind,
    text: &str,
    (ph, _): (usize, usize),
    (kh, kw): (usize, usize),
) -> String {
    let k = if ph > kh / 2 { kh } else { kw };
    let half = k / 2;
    format!(
        "`{}` padding `{text}` is more than half the kernel, {k} / 2 = {half}, which PyTorch refuses\nhelp: use at most `p{half}`",
        kind.keyword(),
    )
}

pub fn needs_spatial(keyword: &str, shape: Shape, from: &From) -> String {
    format!(
        "`{keyword}` needs an HxWxC input, but {from} gives the flat {shape}\nhelp: convolutions and pooling come before `flatten`"
    )
}

pub fn dense_needs_flatten(shape: Shape, from: &From, outputs: usize) -> String {
    let Shape::Hwc(h, w, c) = shape else { unreachable!("only called on HxWxC shapes") };
    format!(
        "`dense` needs a flat input, but {from} gives {h}x{w}x{c}\n\
         help: add `flatten;` before this layer: it gives {h}*{w}*{c} = {} features, \
         or `globalavgpool;` for {c}\n\
         note: Keras's `Dense` would act on the channel axis alone here and give {h}x{w}x{outputs}",
        shape.len()
    )
}

pub fn wrong_dense_inputs(
    factors: &[usize],
    stated: Option<usize>,
    actual: usize,
    from: &From,
    outputs: usize,
) -> String {
    let stated = match (factors.len(), stated) {
        (_, None) => format!("{} (which overflows usize)", join_factors(factors)),
        (1, Some(n)) => n.to_string(),
        (_, Some(n)) => format!("{} = {n}", join_factors(factors)),
    };
    let gives = from.breakdown.clone().unwrap_or_else(|| actual.to_string());
    format!(
        "dense expects {stated} inputs but {} gives {gives}\n{}\nhelp: write `dense {actual} -> {outputs}`, or leave the input size out: `dense {outputs}`",
        from.keyword(),
        origin(Shape::Flat(actual), from)
    )
}

fn join_factors(factors: &[usize]) -> String {
    factors.iter().map(usize::to_string).collect::<Vec<_>>().join("*")
}

pub fn wrong_conv_channels(stated: usize, shape: Shape, from: &From) -> String {
    let c = shape.channels();
    format!(
        "conv expects {stated} input channels but {} gives {c}\n{}\nhelp: write `{c} ->`, or leave it out",
        from.keyword(),
        origin(shape, from)
    )
}

pub fn bad_groups(groups: usize, cin: usize, cout: usize) -> String {
    let both: Vec<String> = (1..=cin.min(cout).min(64))
        .filter(|g| cin.is_multiple_of(*g) && cout.is_multiple_of(*g))
        .map(|g| format!("`g{g}`"))
        .collect();
    format!(
        "groups `g{groups}` must divide both the input channels ({cin}) and the output channels ({cout})\nhelp: {} divide both",
        either(&both)
    )
}

pub fn same_needs_stride_one(c: &ConvSpec) -> String {
    let (sh, sw) = c.stride;
    let stride = if sh == sw { sh.to_string() } else { format!("{sh}x{sw}") };
    let half = c.dilation.0.saturating_mul(c.kernel.0 - 1) / 2;
    format!(
        "`same` padding needs stride 1, as in PyTorch, but the stride is {stride}\nhelp: give the padding instead, e.g. `p{half}`"
    )
}

/// `(28 + 2*0 - 7) / 2 + 1`, the zero padding shown when `full`.
pub fn formula(w: &Window, full: bool) -> String {
    let pad = match (w.pad_before, w.pad_after) {
        (0, 0) if !full => String::new(),
        (b, a) if b == a => format!(" + 2*{b}"),
        (b, a) => format!(" + {b} + {a}"),
    };
    let kernel = if w.dilation == 1 {
        format!(" - {}", w.kernel)
    } else {
        format!(" - {}*({} - 1) - 1", w.dilation, w.kernel)
    };
    format!("({}{pad}{kernel}) / {} + 1", w.input, w.stride)
}

fn value(w: &Window) -> String {
    w.exact_output().map_or_else(|| "an overflow".to_string(), |r| r.to_string())
}

/// The arithmetic column of `summary()`: `(32 - 7) / 2 + 1 = 13.5 -> 13 (floor)`.
pub fn arithmetic(height: &Window, width: &Window, rounding: Rounding) -> String {
    let one = |w: &Window| {
        let exact = value(w);
        let out = out_size(w, rounding).map_or_else(|_| "?".into(), |o| o.to_string());
        let mode = if rounding == Rounding::Ceil { "ceil" } else { "floor" };
        let rounded = if exact == out { String::new() } else { format!(" -> {out} ({mode})") };
        format!("{} = {exact}{rounded}", formula(w, false))
    };
    let (h, w) = (one(height), one(width));
    if height == width { h } else { format!("h: {h}; w: {w}") }
}

/// A window that does not fit or does not give a whole number.
pub fn bad_window(
    keyword: &str,
    shape: Shape,
    from: &From,
    axes: [(Window, Result<usize, SizeError>); 2],
    fixes: &[String],
) -> String {
    let [(height, rh), (width, rw)] = axes;
    let mut lines = Vec::new();
    if rh == Err(SizeError::Overflow) || rw == Err(SizeError::Overflow) {
        lines.push(format!("{keyword} output size overflows usize"));
    }
    let does_not_fit = |r: &Result<usize, SizeError>| matches!(r, Err(SizeError::DoesNotFit { .. }));
    if does_not_fit(&rh) || does_not_fit(&rw) {
        let Shape::Hwc(h, w, _) = shape else { unreachable!("windows run over HxWxC") };
        let (axis, window) = if does_not_fit(&rw) { ("width", width) } else { ("height", height) };
        lines.push(format!(
            "{keyword} kernel {}x{} does not fit the {h}x{w} input: along the {axis}, {} = {}",
            height.kernel,
            width.kernel,
            formula(&window, true),
            value(&window)
        ));
    }
    let fractional = |r: &Result<usize, SizeError>| matches!(r, Err(SizeError::Fractional { .. }));
    if lines.is_empty() {
        let same_numbers = Window { input: width.input, ..height } == width && height.input == width.input;
        if fractional(&rw) {
            let also = if fractional(&rh) && same_numbers { " (and so is the height)" } else { "" };
            lines.push(format!(
                "{keyword} output width is not a whole number: {} = {}{also}",
                formula(&width, true),
                value(&width)
            ));
        }
        if fractional(&rh) && !(fractional(&rw) && same_numbers) {
            lines.push(format!(
                "{keyword} output height is not a whole number: {} = {}",
                formula(&height, true),
                value(&height)
            ));
        }
    }
    lines.push(origin(shape, from));
    if !fixes.is_empty() {
        lines.push(format!("help: {}", either(fixes)));
    }
    lines.join("\n")
}

/// Fixes for a convolution whose windows do not work out, nearest first.
pub fn conv_fixes(c: &ConvSpec, h: usize, w: usize) -> Vec<String> {
    let outcome = |cand: &ConvSpec| -> Option<String> {
        let (a, b) = cand.axes(h, w);
        let rounding = if cand.floor { Rounding::Floor } else { Rounding::Exact };
        Some(format!("{}x{}", out_size(&a, rounding).ok()?, out_size(&b, rounding).ok()?))
    };
    let mut fixes = Vec::new();
    let mut note = None;
    if let Padding::Explicit(pad) = c.padding {
        // Padding past the dilated kernel is never what the user wants; the
        // cap keeps a huge kernel from making a huge search.
        let limit = c.kernel.0.max(c.kernel.1).saturating_mul(c.dilation.0.max(c.dilation.1)).min(64);
        let mut pads: Vec<usize> = (0..=limit).filter(|&p| (p, p) != pad).collect();
        pads.sort_by_key(|p| p.abs_diff(pad.0));
        let found = pads.iter().find_map(|&p| {
            outcome(&ConvSpec { padding: Padding::Explicit((p, p)), ..c.clone() }).map(|o| (p, o))
        });
        match found {
            Some((p, out)) => fixes.push(format!("`p{p}` gives {out}")),
            None => note = no_padding_note(&c.axes(h, w)),
        }
        if c.stride == (1, 1)
            && let Some(out) =
                outcome(&ConvSpec { padding: Padding::Same, ..c.clone() }).filter(|_| pad == (0, 0))
        {
            fixes.push(format!("`same` gives {out}"));
        }
    }
    if c.kernel.0 == c.kernel.1 {
        let k = c.kernel.0;
        let kernels = [k.checked_sub(1), k.checked_add(1), k.checked_sub(2), k.checked_add(2)];
        let found = kernels.into_iter().flatten().filter(|&k| k >= 1);
        let found = found.filter_map(|k| {
            outcome(&ConvSpec { kernel: (k, k), ..c.clone() }).map(|o| format!("`k{k}` gives {o}"))
        });
        fixes.extend(found.take(2));
    }
    if c.stride.0 == c.stride.1 {
        // The nearest smaller strides, and 1.
        let strides = (1..c.stride.0).rev().take(8).chain((c.stride.0 > 9).then_some(1));
        let found = strides.into_iter().find_map(|s| {
            outcome(&ConvSpec { stride: (s, s), ..c.clone() }).map(|o| format!("`s{s}` gives {o}"))
        });
        fixes.extend(found);
    }
    if !c.floor {
        fixes.extend(
            outcome(&ConvSpec { floor: true, ..c.clone() })
                .map(|o| format!("`floor` gives {o} as PyTorch does")),
        );
    }
    if let Some(note) = note {
        fixes.insert(0, note);
    }
    fixes
}

/// "no padding can help, since 28 + 2p - 7 is odd for every p".
fn no_padding_note((height, width): &(Window, Window)) -> Option<String> {
    let stuck =
        [width, height].into_iter().find(|w| w.stride % 2 == 0 && w.span().is_some_and(|s| s % 2 != 0))?;
    let reach = stuck.reach()?;
    Some(format!(
        "no padding can help, since {} + 2p - {reach} is odd for every p, and the stride {} is even; instead",
        stuck.input, stuck.stride
    ))
}

/// Fixes for a pool whose windows do not work out.
pub fn pool_fixes(p: &PoolSpec, h: usize, w: usize) -> Vec<String> {
    let outcome = |cand: &PoolSpec| -> Option<String> {
        let (a, b) = cand.axes(h, w);
        Some(format!("{}x{}", out_size(&a, cand.rounding).ok()?, out_size(&b, cand.rounding).ok()?))
    };
    let mut fixes = Vec::new();
    let half = (p.kernel.0.min(p.kernel.1) / 2).min(64);
    let mut pads: Vec<usize> = (0..=half).filter(|&q| (q, q) != p.pad).collect();
    pads.sort_by_key(|q| q.abs_diff(p.pad.0));
    let found = pads
        .iter()
        .find_map(|&q| outcome(&PoolSpec { pad: (q, q), ..p.clone() }).map(|o| format!("`p{q}` gives {o}")));
    fixes.extend(found);
    if p.kernel.0 == p.kernel.1 {
        let k = p.kernel.0;
        // A 1x1 pool is no pool: start at 2.
        let kernels = [k.checked_sub(1), k.checked_add(1)].into_iter().flatten().filter(|&k| k >= 2);
        for k in kernels {
            // A bare kernel also sets the stride, as in PyTorch.
            let stride = if p.stride == p.kernel { (k, k) } else { p.stride };
            let text = if p.bare_kernel { k.to_string() } else { format!("k{k}") };
            let cand = PoolSpec {
                kernel: (k, k),
                stride,
                pad: (p.pad.0.min(k / 2), p.pad.1.min(k / 2)),
                ..p.clone()
            };
            fixes.extend(outcome(&cand).map(|o| format!("`{text}` gives {o}")).into_iter().take(1));
        }
    }
    if p.rounding == Rounding::Exact {
        fixes.extend(
            outcome(&PoolSpec { rounding: Rounding::Floor, ..p.clone() })
                .map(|o| format!("`floor` gives {o} as PyTorch does")),
        );
        fixes.extend(
            outcome(&PoolSpec { rounding: Rounding::Ceil, ..p.clone() })
                .map(|o| format!("`ceil` gives {o} as PyTorch's `ceil_mode=True`")),
        );
    }
    fixes
}

/// A residual whose body and shortcut give different shapes.
pub fn residual_mismatch(
    input: Shape,
    (body, body_from): (Shape, &From),
    shortcut: Option<(Shape, &From)>,
) -> String {
    let first = match shortcut {
        None => format!(
            "residual body gives {body} but the identity shortcut gives the block's input, {input}\n\
             body ends at {body_from}"
        ),
        Some((shortcut, from)) => format!(
            "residual body gives {body} but its shortcut gives {shortcut}\nbody ends at {body_from}; shortcut ends at {from}"
        ),
    };
    match projection(input, body) {
        Some(fix) => format!("{first}\nhelp: project the shortcut: `{fix}` gives {body}"),
        None => format!("{first}\nhelp: the body and the shortcut must give the same shape"),
    }
}

/// A shortcut from `input` to `target`, checked with the arithmetic of the
/// layers it is made of: a strided 1x1 conv and a batchnorm, as torchvision's.
fn projection(input: Shape, target: Shape) -> Option<String> {
    let (Shape::Hwc(h, w, _), Shape::Hwc(oh, ow, oc)) = (input, target) else {
        return match (input, target) {
            (Shape::Flat(_), Shape::Flat(n)) => Some(format!("shortcut {{ dense {n} nobias; batchnorm; }}")),
            _ => None,
        };
    };
    let gives = |s: usize, rounding| {
        let axis = |n| Window { input: n, kernel: 1, stride: s, pad_before: 0, pad_after: 0, dilation: 1 };
        out_size(&axis(h), rounding) == Ok(oh) && out_size(&axis(w), rounding) == Ok(ow)
    };
    let limit = h.max(w).min(64);
    let (s, floor) = (1..=limit)
        .find(|&s| gives(s, Rounding::Exact))
        .map(|s| (s, false))
        .or_else(|| (1..=limit).find(|&s| gives(s, Rounding::Floor)).map(|s| (s, true)))?;
    let stride = if s == 1 { String::new() } else { format!(" s{s}") };
    let floor = if floor { " floor" } else { "" };
    Some(format!("shortcut {{ conv {oc} k1{stride} nobias{floor}; batchnorm; }}"))
}

/// The shape of branches joined along channels (or features), or why they
/// cannot be.
pub fn joined(outputs: &[(Shape, &From)]) -> Result<Shape, String> {
    let flat = outputs.iter().filter(|(s, _)| matches!(s, Shape::Flat(_))).count();
    let describe = |b: usize| format!("branch {b} gives {} (its last item: {})", outputs[b].0, outputs[b].1);
    if flat != 0 && flat != outputs.len() {
        let (f, s) = (
            outputs.iter().position(|(s, _)| matches!(s, Shape::Flat(_))).unwrap_or(0),
            outputs.iter().position(|(s, _)| matches!(s, Shape::Hwc(..))).unwrap_or(0),
        );
        let (first, second) = (describe(f.min(s)), describe(f.max(s)));
        return Err(format!(
            "concat joins flat branches or spatial ones, not both: {first} but {second}\n\
             help: add `flatten` at the end of branch {s}, or make every branch spatial"
        ));
    }
    let total = outputs.iter().try_fold(0usize, |sum, (s, _)| sum.checked_add(s.channels()));
    let total = total.ok_or_else(|| "the joined channels overflow usize".to_string())?;
    let Some((Shape::Hwc(h, w, _), _)) = outputs.first() else { return Ok(Shape::Flat(total)) };
    let (h, w) = (*h, *w);
    let Some(b) =
        outputs.iter().position(|(s, _)| !matches!(s, Shape::Hwc(bh, bw, _) if (*bh, *bw) == (h, w)))
    else {
        return Ok(Shape::Hwc(h, w, total));
    };
    let Shape::Hwc(bh, bw, bc) = outputs[b].0 else { unreachable!("all spatial") };
    let fix = if bh > 0 && bw > 0 && h % bh == 0 && w % bw == 0 && h / bh == w / bw && h > bh {
        format!("`upsample {}` at the end of branch {b} gives {h}x{w}x{bc}", h / bh)
    } else if h > 0 && w > 0 && bh % h == 0 && bw % w == 0 && bh / h == bw / w && bh > h {
        format!("`maxpool {}` at the end of branch {b} gives {h}x{w}x{bc}", bh / h)
    } else {
        format!("change branch {b} so that it gives {h}x{w}")
    };
    Err(format!(
        "concat branches must give the same height and width: {}, but {}\nhelp: {fix}",
        describe(0),
        describe(b)
    ))
}
