//! Walks the items, works out every shape and gathers every error.
//! No syntax here: items come in as kinds and option values, errors go out
//! as messages with the index of the layer, option or block they belong
//! to. After an error that leaves a shape unknown, later items still have
//! their options checked, but no shape of theirs is worked out.
//!
//! Names follow PyTorch: an item is its label, or else its position in the
//! sequence that holds it (a fused activation is an item of its own); its
//! PyTorch name is the path of those names joined by `.`, its field name
//! the path joined by `_`, where a top-level item without a label is named
//! by its kind and ordinal (`conv2`, `residual1`).

use cnn_shape::{Activation, Op, Shape};

use crate::ast::{Act, Kind};
use crate::ctxt::{BranchInput, Ctxt, From, InputKind, ItemInput, LayerInput, Site};
use crate::diagnose;
use crate::layer::{self, Input, StepError, activation};
use crate::resolve::resolve;
use crate::spec::Spec;

/// What the check found: the plan the code is generated from.
#[derive(Debug, Default)]
pub struct Plan {
    pub input: Option<Shape>,
    pub steps: Vec<Step>,
}

/// One layer or block of the plan; a fused activation is a step of its
/// own, a sequence's steps are in the sequence that holds it.
#[derive(Debug)]
pub struct Step {
    pub kind: StepKind,
    pub input: Shape,
    pub output: Shape,
    /// Trainable parameters, inside blocks included.
    pub params: usize,
    /// `LayerInfo::name`: at the top, the field name of a layer with
    /// parameters, else its label or keyword; inside blocks, the dotted path.
    pub name: String,
    /// The index of the layer it came from, if it is one.
    pub layer: Option<usize>,
    /// The field of a layer with parameters; for a top-level label, the
    /// label itself (then `layer` names it).
    pub field: Option<String>,
    /// Its name in PyTorch: the dotted path.
    pub torch: String,
    /// The HxWxC its flat input was flattened from, if it was.
    pub flat_from: Option<(usize, usize, usize)>,
    pub arithmetic: String,
    pub source: String,
    /// How deep in blocks it is: 0 at the top.
    pub depth: usize,
}

#[derive(Debug)]
pub enum StepKind {
    Op(Op),
    Residual { body: Vec<Step>, shortcut: Option<Vec<Step>>, act: Option<Activation> },
    Concat { branches: Vec<Vec<Step>>, act: Option<Activation> },
}

/// The shape flowing between items and where it came from.
#[derive(Clone)]
struct Current {
    shape: Shape,
    from: From,
    flat_from: Option<(usize, usize, usize)>,
}

/// Where a sequence's items are named from.
#[derive(Clone, Default)]
struct Scope {
    /// PyTorch path of the sequence; empty at the top.
    torch: Vec<String>,
    /// Field-name path of the sequence; empty at the top.
    field: Vec<String>,
    depth: usize,
}

impl Scope {
    /// The scope of a child named `torch` (and `field` in field names).
    fn child(&self, torch: String, field: String) -> Scope {
        let mut scope = self.clone();
        scope.torch.push(torch);
        scope.field.push(field);
        scope.depth += 1;
        scope
    }

    fn torch_name(&self, name: &str) -> String {
        self.torch.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join(".")
    }

    fn field_name(&self, name: &str) -> String {
        self.field.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join("_")
    }
}

/// Top-level ordinals (`conv2`, `residual1`) and the field names taken.
#[derive(Default)]
struct Names {
    counts: Vec<(&'static str, usize)>,
    taken: Vec<String>,
}

impl Names {
    fn next(&mut self, prefix: &'static str) -> String {
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
        format!("{prefix}{ordinal}")
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

pub fn check(items: &[ItemInput], layers: &[LayerInput], cx: &mut Ctxt) -> Plan {
    let mut walk = Walk { layers, cx, names: Names::default(), plan: Plan::default() };
    let Some((first, rest)) = items.split_first() else {
        let message = "a network needs layers, starting with `input HxWxC`, e.g. `input 28x28x1; conv 8 k3; flatten; dense 10`";
        walk.cx.error(Site::Body, message);
        return walk.plan;
    };
    let current = match &first.kind {
        InputKind::Layer(i) => match (resolve(*i, &layers[*i], walk.cx), layers[*i].kind) {
            (Some(Spec::Input(h, w, c)), _) => walk.input(*i, (h, w, c)),
            (_, Kind::Input) => None,
            _ => {
                walk.cx.error(Site::Layer(*i), diagnose::missing_input(&layers[*i].source));
                None
            }
        },
        InputKind::Broken => None,
        _ => {
            walk.cx
                .error(Site::Body, "the first item must be `input HxWxC`, e.g. `input 28x28x1`, not a block");
            None
        }
    };
    let mut steps = Vec::new();
    walk.items(rest, &Scope::default(), current, &mut steps);
    walk.plan.steps = steps;
    walk.plan
}

struct Walk<'a> {
    layers: &'a [LayerInput],
    cx: &'a mut Ctxt,
    names: Names,
    plan: Plan,
}

impl Walk<'_> {
    fn input(&mut self, i: usize, (h, w, c): (usize, usize, usize)) -> Option<Current> {
        let shape = Shape::Hwc(h, w, c);
        if shape.checked_len().is_none() {
            self.cx
                .error(Site::Layer(i), format!("an input of {h}x{w}x{c} has more values than usize counts"));
            return None;
        }
        self.plan.input = Some(shape);
        let from = From { layer: i + 1, source: self.layers[i].source.clone(), breakdown: None };
        Some(Current { shape, from, flat_from: None })
    }

    /// Works out a sequence's items in order, their steps into `out`; the
    /// shape after them, if it is known.
    fn items(
        &mut self,
        items: &[ItemInput],
        scope: &Scope,
        mut cur: Option<Current>,
        out: &mut Vec<Step>,
    ) -> Option<Current> {
        let mut position = 0;
        for item in items {
            let name = item.label.clone().unwrap_or_else(|| position.to_string());
            cur = match &item.kind {
                InputKind::Layer(i) => {
                    let (i, layer) = (*i, &self.layers[*i]);
                    let spec = resolve(i, layer, self.cx);
                    if layer.kind == Kind::Input {
                        self.cx.error(Site::Layer(i), "`input` comes once, as the first layer");
                        position += 1;
                        None
                    } else {
                        let before = out.len();
                        let next = match (spec, cur) {
                            (Some(spec), Some(cur)) => {
                                self.layer(i, item.label.as_deref(), &name, &spec, cur, scope, out)
                            }
                            _ => None,
                        };
                        // A fused activation is an item of its own; without a shape, still count it.
                        let fused = matches!(layer.kind, Kind::Conv | Kind::Dense)
                            && layer.options.iter().any(|o| matches!(o.value, crate::ast::OptValue::Act(_)));
                        position += if out.len() > before { out.len() - before } else { 1 + fused as usize };
                        next
                    }
                }
                InputKind::Seq(items) => {
                    position += 1;
                    let field = self.block_field(item.label.as_deref(), &name, scope, "seq");
                    self.items(items, &scope.child(name, field), cur, out)
                }
                InputKind::Residual { block, body, shortcut, act } => {
                    position += 1;
                    let field = self.block_field(item.label.as_deref(), &name, scope, "residual");
                    self.residual(
                        *block,
                        &scope.child(name, field),
                        cur,
                        (body, shortcut.as_ref(), *act),
                        out,
                    )
                }
                InputKind::Concat { block, branches, act } => {
                    position += 1;
                    let field = self.block_field(item.label.as_deref(), &name, scope, "concat");
                    self.concat(*block, &scope.child(name, field), cur, (branches, *act), out)
                }
                InputKind::Broken => {
                    position += 1;
                    None
                }
            };
        }
        cur
    }

    /// A block's name in field names: at the top, its label or kind and ordinal.
    fn block_field(&mut self, label: Option<&str>, name: &str, scope: &Scope, kind: &'static str) -> String {
        match scope.depth {
            0 => {
                let ordinal = self.names.next(kind);
                label.map_or(ordinal, str::to_string)
            }
            _ => name.to_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        i: usize,
        label: Option<&str>,
        name: &str,
        spec: &Spec,
        cur: Current,
        scope: &Scope,
        out: &mut Vec<Step>,
    ) -> Option<Current> {
        match self.push_layer(i, label, name, spec, cur, scope, out) {
            Ok(next) => Some(next),
            Err((site, message)) => {
                self.cx.error(site, message);
                None
            }
        }
    }

    /// Works out layer `i`, adds its steps and gives the shape after it.
    #[allow(clippy::too_many_arguments)]
    fn push_layer(
        &mut self,
        i: usize,
        label: Option<&str>,
        name: &str,
        spec: &Spec,
        cur: Current,
        scope: &Scope,
        out: &mut Vec<Step>,
    ) -> Result<Current, StepError> {
        let layer = &self.layers[i];
        let outcome = layer::step(spec, Input { shape: cur.shape, from: &cur.from }, i)?;
        if outcome.output.checked_len().is_none() {
            let message =
                format!("the output of this layer, {}, has more values than usize counts", outcome.output);
            return Err((Site::Layer(i), message));
        }
        // Ordinals count every top-level layer of the kind, labelled or not.
        let field = outcome.op.has_params().then(|| match scope.depth {
            0 => {
                let ordinal = self.names.next(match outcome.op {
                    Op::Conv { .. } => "conv",
                    Op::Dense { .. } => "dense",
                    _ => "bn",
                });
                label.map_or(ordinal, str::to_string)
            }
            _ => scope.field_name(name),
        });
        if let Some(field) = &field {
            self.names.claim(field).map_err(|message| (Site::Layer(i), message))?;
        }
        // What a flat size is made of, and what it was flattened from, carry
        // through the layers that keep the shape.
        let keeps_shape =
            matches!(outcome.op, Op::Flatten | Op::Dropout(_) | Op::Act(_) | Op::BatchNorm { .. });
        let (breakdown, flat_from) = match (&outcome.op, cur.shape) {
            (Op::Flatten, Shape::Hwc(h, w, c)) => {
                (Some(format!("{h}*{w}*{c} = {}", outcome.output.len())), Some((h, w, c)))
            }
            _ if keeps_shape => (cur.from.breakdown.clone(), cur.flat_from),
            _ => (None, None),
        };
        let info_name = match (scope.depth, &field) {
            (0, Some(field)) => field.clone(),
            (0, None) => label.unwrap_or(layer.kind.keyword()).to_string(),
            _ => scope.torch_name(name),
        };
        let output = outcome.output;
        out.push(Step {
            kind: StepKind::Op(outcome.op),
            input: cur.shape,
            output,
            params: outcome.params,
            name: info_name,
            layer: Some(i),
            field,
            torch: scope.torch_name(name),
            flat_from: cur.flat_from,
            arithmetic: outcome.arithmetic,
            source: layer.source.clone(),
            depth: scope.depth,
        });
        if let Some(act) = fused_act(spec) {
            // The activation is the next item of the sequence.
            let next = name.parse::<usize>().map_or_else(|_| format!("{name}_act"), |p| (p + 1).to_string());
            out.push(act_step(act, output, scope, &next));
        }
        let from = From { layer: i + 1, source: layer.source.clone(), breakdown };
        Ok(Current { shape: output, from, flat_from })
    }

    fn residual(
        &mut self,
        block: usize,
        scope: &Scope,
        cur: Option<Current>,
        (body, shortcut, act): (&[ItemInput], Option<&BranchInput>, Option<Act>),
        out: &mut Vec<Step>,
    ) -> Option<Current> {
        let mut body_steps = Vec::new();
        let body_out = self.items(body, scope, cur.clone(), &mut body_steps);
        let mut shortcut_steps = Vec::new();
        let shortcut_out = match shortcut {
            Some(branch) => {
                let name = branch.label.clone().unwrap_or_else(|| "shortcut".into());
                self.items(&branch.items, &scope.child(name.clone(), name), cur.clone(), &mut shortcut_steps)
            }
            None => cur.clone(),
        };
        let (cur, body_out, shortcut_out) = (cur?, body_out?, shortcut_out?);
        if body_out.shape != shortcut_out.shape {
            let shortcut = shortcut.map(|_| (shortcut_out.shape, &shortcut_out.from));
            let message = diagnose::residual_mismatch(cur.shape, (body_out.shape, &body_out.from), shortcut);
            self.cx.error(Site::Block(block), message);
            return None;
        }
        let shape = body_out.shape;
        let arithmetic = format!("{shape} + {shape}");
        let source = if shortcut.is_some() { "residual + shortcut" } else { "residual" };
        let kind = StepKind::Residual {
            body: body_steps,
            shortcut: shortcut.map(|_| shortcut_steps),
            act: act.map(activation),
        };
        Some(self.push_block(kind, scope, &cur, shape, arithmetic, source, out))
    }

    fn concat(
        &mut self,
        block: usize,
        scope: &Scope,
        cur: Option<Current>,
        (branches, act): (&[BranchInput], Option<Act>),
        out: &mut Vec<Step>,
    ) -> Option<Current> {
        let mut results = Vec::new();
        for (b, branch) in branches.iter().enumerate() {
            let name = branch.label.clone().unwrap_or_else(|| b.to_string());
            let mut steps = Vec::new();
            let output = self.items(&branch.items, &scope.child(name.clone(), name), cur.clone(), &mut steps);
            results.push((steps, output));
        }
        let cur = cur?;
        let outputs: Vec<Current> = results.iter().map(|(_, o)| o.clone()).collect::<Option<_>>()?;
        let shape = match diagnose::joined(&outputs.iter().map(|o| (o.shape, &o.from)).collect::<Vec<_>>()) {
            Ok(shape) => shape,
            Err(message) => {
                self.cx.error(Site::Block(block), message);
                return None;
            }
        };
        let parts: Vec<String> = outputs.iter().map(|o| o.shape.to_string()).collect();
        let arithmetic = format!("{} = {shape}", parts.join(" ++ "));
        let kind = StepKind::Concat {
            branches: results.into_iter().map(|(s, _)| s).collect(),
            act: act.map(activation),
        };
        Some(self.push_block(kind, scope, &cur, shape, arithmetic, "concat", out))
    }

    /// Adds a block's step, its merge, and gives the shape after it.
    #[allow(clippy::too_many_arguments)]
    fn push_block(
        &mut self,
        kind: StepKind,
        scope: &Scope,
        cur: &Current,
        output: Shape,
        arithmetic: String,
        source: &str,
        out: &mut Vec<Step>,
    ) -> Current {
        let branches: Vec<&Vec<Step>> = match &kind {
            StepKind::Residual { body, shortcut, .. } => std::iter::once(body).chain(shortcut).collect(),
            StepKind::Concat { branches, .. } => branches.iter().collect(),
            StepKind::Op(_) => Vec::new(),
        };
        let params =
            branches.iter().flat_map(|b| b.iter()).fold(0usize, |sum, s| sum.saturating_add(s.params));
        let last_layer = branches.iter().flat_map(|b| b.iter()).filter_map(|s| s.layer).max();
        let source = source.to_string();
        let torch = scope.torch.join(".");
        out.push(Step {
            kind,
            input: cur.shape,
            output,
            params,
            name: torch.clone(),
            layer: None,
            field: None,
            torch,
            flat_from: None,
            arithmetic,
            source: source.clone(),
            depth: scope.depth - 1,
        });
        let from = From { layer: last_layer.map_or(cur.from.layer, |l| l + 1), source, breakdown: None };
        Current { shape: output, from, flat_from: None }
    }
}

fn fused_act(spec: &Spec) -> Option<Act> {
    match spec {
        Spec::Conv(c) => c.act,
        Spec::Dense { act, .. } => *act,
        _ => None,
    }
}

fn act_source(act: Act) -> String {
    match act.alpha {
        Some(alpha) => format!("{} {alpha:?}", act.kind.keyword()),
        None => act.kind.keyword().to_string(),
    }
}

fn act_step(act: Act, shape: Shape, scope: &Scope, name: &str) -> Step {
    let keyword = act.kind.keyword().to_string();
    Step {
        kind: StepKind::Op(Op::Act(activation(act))),
        input: shape,
        output: shape,
        params: 0,
        name: if scope.depth == 0 { keyword } else { scope.torch_name(name) },
        layer: None,
        field: None,
        torch: scope.torch_name(name),
        flat_from: None,
        arithmetic: String::new(),
        source: act_source(act),
        depth: scope.depth,
    }
}
