//! What the user wrote. Every node keeps its tokens, for error spans.

use proc_macro2::TokenStream;
use syn::{Attribute, Ident, Visibility};

/// One `cnn!` invocation: structs, or the layers of an expression.
pub enum Invocation {
    Items(Vec<NetworkItem>),
    Expr(Network),
}

/// `#[attrs] pub struct Name { layers }`.
pub struct NetworkItem {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub network: Network,
}

/// A network's items, and every error met while parsing them, at any depth.
pub struct Network {
    pub body: Body,
    pub errors: Vec<syn::Error>,
}

/// The items between the braces of a network or a block.
pub struct Body {
    /// One entry per item; `None` where the item did not parse.
    pub items: Vec<Option<Item>>,
    /// The whole body, for errors that belong to no single item.
    pub tokens: TokenStream,
}

/// `[/// docs] [label:] layer-or-block`
pub struct Item {
    /// Doc comments and `#[doc]` attributes: the rustdoc of its field.
    pub docs: Vec<Attribute>,
    /// As written, `r#` included: the field's name.
    pub label: Option<Ident>,
    pub kind: ItemKind,
}

pub enum ItemKind {
    Layer(Layer),
    Block(Block),
}

/// `{ ITEMS }`, `residual { BODY } [LABEL:] [shortcut { ITEMS }] [ACT]`,
/// `concat [LABEL:] { A } [LABEL:] { B } ... [ACT]`
pub struct Block {
    /// The keyword (or the braces of a sequence), where its errors point.
    pub keyword: TokenStream,
    pub shape: BlockShape,
    /// The activation after the merge.
    pub act: Option<Act>,
}

pub enum BlockShape {
    Seq(Body),
    Residual { body: Body, shortcut: Option<Branch> },
    Concat(Vec<Branch>),
}

/// A shortcut or a concat's branch, with its label.
pub struct Branch {
    pub label: Option<Ident>,
    pub body: Body,
}

/// `keyword options...`
pub struct Layer {
    pub kind: Kind,
    pub options: Vec<Opt>,
    /// The layer from keyword to last option.
    pub tokens: TokenStream,
    /// The layer as text, e.g. `conv 32 k5 relu`, label excluded.
    pub source: String,
}

/// One option of a layer, e.g. `k5`, `same`, `64*4*4 ->`.
pub struct Opt {
    pub value: OptValue,
    pub tokens: TokenStream,
    pub text: String,
}

/// The layer kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Input,
    Conv,
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    GlobalMaxPool,
    Flatten,
    Dense,
    BatchNorm,
    Dropout,
    Upsample,
    Act(ActKind),
}

/// The activations, as layers or fused after conv and dense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
    Relu,
    Tanh,
    Sigmoid,
    Softmax,
    LeakyRelu,
    Relu6,
    Silu,
}

/// An activation with its parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    pub kind: ActKind,
    /// The negative slope of `leakyrelu`, if given.
    pub alpha: Option<f64>,
}

/// `(height, width)`: `k3` is `(3, 3)`, `k3x5` is `(3, 5)`.
pub type Pair = (usize, usize);

/// An option's meaning, before the layer decides whether it takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    /// `32`
    Number(usize),
    /// `28x28x1`, `2x2`
    Sizes(Vec<usize>),
    /// `3 ->`, `64*4*4 ->`: a stated input size, as its factors.
    Arrow(Vec<usize>),
    /// `0.5`, `1e-3`
    Float(f64),
    Kernel(Pair),
    Stride(Pair),
    Pad(Pair),
    Dilation(Pair),
    Groups(usize),
    Same,
    Valid,
    NoBias,
    Floor,
    Ceil,
    Act(Act),
}

impl Kind {
    /// Every layer keyword and its kind, in the order the docs give them.
    pub const KEYWORDS: &[(&str, Kind)] = &[
        ("input", Kind::Input),
        ("conv", Kind::Conv),
        ("maxpool", Kind::MaxPool),
        ("avgpool", Kind::AvgPool),
        ("globalavgpool", Kind::GlobalAvgPool),
        ("globalmaxpool", Kind::GlobalMaxPool),
        ("flatten", Kind::Flatten),
        ("dense", Kind::Dense),
        ("batchnorm", Kind::BatchNorm),
        ("dropout", Kind::Dropout),
        ("upsample", Kind::Upsample),
        ("relu", Kind::Act(ActKind::Relu)),
        ("tanh", Kind::Act(ActKind::Tanh)),
        ("sigmoid", Kind::Act(ActKind::Sigmoid)),
        ("softmax", Kind::Act(ActKind::Softmax)),
        ("leakyrelu", Kind::Act(ActKind::LeakyRelu)),
        ("relu6", Kind::Act(ActKind::Relu6)),
        ("silu", Kind::Act(ActKind::Silu)),
    ];

    pub fn from_keyword(word: &str) -> Option<Kind> {
        Kind::KEYWORDS.iter().find(|(k, _)| *k == word).map(|&(_, kind)| kind)
    }

    pub fn keyword(self) -> &'static str {
        Kind::KEYWORDS.iter().find(|(_, k)| *k == self).map_or("?", |(word, _)| word)
    }
}

impl ActKind {
    pub fn keyword(self) -> &'static str {
        Kind::Act(self).keyword()
    }
}
