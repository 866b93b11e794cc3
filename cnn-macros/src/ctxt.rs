//! What every stage after parsing shares: a layer as the checks see it
//! (no syntax), the place an error belongs to, and the context that
//! gathers the errors (serde_derive's `Ctxt`).

use std::fmt;

use crate::ast::{Act, Kind, OptValue};

/// An item as the check sees it: a layer (by its index among all the
/// network's layers, depth first), a block, or an item that did not parse.
pub struct ItemInput {
    /// The label as written, without `r#`.
    pub label: Option<String>,
    pub kind: InputKind,
}

pub enum InputKind {
    Layer(usize),
    Seq(Vec<ItemInput>),
    /// `block` is its index among the network's residuals and concats.
    Residual {
        block: usize,
        body: Vec<ItemInput>,
        shortcut: Option<BranchInput>,
        act: Option<Act>,
    },
    Concat {
        block: usize,
        branches: Vec<BranchInput>,
        act: Option<Act>,
    },
    Broken,
}

/// A shortcut or a branch of a concat.
pub struct BranchInput {
    pub label: Option<String>,
    pub items: Vec<ItemInput>,
}

/// A layer as the check sees it.
pub struct LayerInput {
    pub kind: Kind,
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
    /// The keyword of a residual or concat.
    Block(usize),
}

#[derive(Debug)]
pub struct Diagnostic {
    pub site: Site,
    pub message: String,
}

/// The errors of one network, gathered so that all are reported at once.
#[derive(Debug, Default)]
pub struct Ctxt {
    pub errors: Vec<Diagnostic>,
}

impl Ctxt {
    pub fn error(&mut self, site: Site, message: impl Into<String>) {
        self.errors.push(Diagnostic { site, message: message.into() });
    }
}

/// The layer a shape came from: `layer 4 `flatten``.
#[derive(Clone, Debug)]
pub struct From {
    /// 1-based position among the layers, `input` being 1.
    pub layer: usize,
    pub source: String,
    /// How a flat size came about, e.g. `12*12*32 = 4608`.
    pub breakdown: Option<String>,
}

impl From {
    pub fn keyword(&self) -> &str {
        self.source.split_whitespace().next().unwrap_or("")
    }
}

impl fmt::Display for From {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} `{}`", self.layer, self.source)
    }
}
