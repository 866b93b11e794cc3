//! The `cnn!` macro: parse -> check -> expand.
//!
//! Parse errors and shape errors are gathered, not returned at the first,
//! and the struct is emitted next to them, so that code using it does not
//! pile up errors of its own.

mod ast;
mod check;
mod ctxt;
mod diagnose;
mod expand;
mod layer;
mod parse;
mod python;
mod resolve;
mod spec;
mod table;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Ident, Visibility};

use ast::{BlockShape, Body, Branch, Invocation, Item, ItemKind, Layer, Network};
use ctxt::{BranchInput, Ctxt, InputKind, ItemInput, LayerInput, OptInput, Site};

/// Defines convolutional networks whose every shape is checked while the
/// code compiles.
///
#[doc = include_str!("grammar.md")]
#[proc_macro]
pub fn cnn(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand(input.into()).into()
}

/// The whole pipeline on `proc_macro2` tokens, so that tests can run it.
fn expand(input: TokenStream) -> TokenStream {
    match syn::parse2::<Invocation>(input) {
        Err(error) => error.to_compile_error(),
        Ok(Invocation::Items(items)) => {
            items.iter().map(|item| network(&item.attrs, &item.vis, &item.name, &item.network)).collect()
        }
        Ok(Invocation::Expr(body)) => {
            let name = Ident::new("__CnnNetwork", Span::call_site());
            let network = network(&[], &Visibility::Inherited, &name, &body);
            quote!({ #network #name::new() })
        }
    }
}

/// The network's layers, depth first, as the check and the expansion see
/// them; and its blocks' keywords, for errors.
#[derive(Default)]
struct Flat<'a> {
    inputs: Vec<LayerInput>,
    layers: Vec<expand::LayerSyntax<'a>>,
    blocks: Vec<TokenStream>,
}

fn items<'a>(body: &'a Body, flat: &mut Flat<'a>) -> Vec<ItemInput> {
    let item = |item: &'a Option<Item>, flat: &mut Flat<'a>| {
        let Some(item) = item else { return ItemInput { label: None, kind: InputKind::Broken } };
        let label = item.label.as_ref().map(|label| label.unraw().to_string());
        let branch = |b: &'a Branch, flat: &mut Flat<'a>| BranchInput {
            label: b.label.as_ref().map(|label| label.unraw().to_string()),
            items: items(&b.body, flat),
        };
        let kind = match &item.kind {
            ItemKind::Layer(layer) => {
                flat.inputs.push(layer_input(layer));
                flat.layers.push(expand::LayerSyntax { label: item.label.as_ref(), docs: &item.docs, layer });
                InputKind::Layer(flat.inputs.len() - 1)
            }
            ItemKind::Block(block) => match &block.shape {
                BlockShape::Seq(body) => InputKind::Seq(items(body, flat)),
                BlockShape::Residual { body, shortcut } => {
                    flat.blocks.push(block.keyword.clone());
                    let index = flat.blocks.len() - 1;
                    let body = items(body, flat);
                    let shortcut = shortcut.as_ref().map(|b| branch(b, flat));
                    InputKind::Residual { block: index, body, shortcut, act: block.act }
                }
                BlockShape::Concat(branches) => {
                    flat.blocks.push(block.keyword.clone());
                    let index = flat.blocks.len() - 1;
                    let branches = branches.iter().map(|b| branch(b, flat)).collect();
                    InputKind::Concat { block: index, branches, act: block.act }
                }
            },
        };
        ItemInput { label, kind }
    };
    body.items.iter().map(|i| item(i, flat)).collect()
}

fn network(attrs: &[Attribute], vis: &Visibility, name: &Ident, network: &Network) -> TokenStream {
    let mut flat = Flat::default();
    let items = items(&network.body, &mut flat);
    let mut cx = Ctxt::default();
    let plan = check::check(&items, &flat.inputs, &mut cx);
    let parse_errors = network.errors.iter().map(syn::Error::to_compile_error);
    let check_errors = cx.errors.iter().map(|d| {
        let tokens = match d.site {
            Site::Body => network.body.tokens.clone(),
            Site::Layer(i) => flat.layers[i].layer.tokens.clone(),
            Site::Option(i, j) => flat.layers[i].layer.options[j].tokens.clone(),
            Site::Block(b) => flat.blocks[b].clone(),
        };
        // An empty body has no tokens to point at: the struct's name stands in.
        let tokens = if tokens.is_empty() { quote!(#name) } else { tokens };
        syn::Error::new_spanned(tokens, &d.message).to_compile_error()
    });
    let code = expand::network(attrs, vis, name, &flat.layers, &plan);
    quote!(#(#parse_errors)* #(#check_errors)* #code)
}

fn layer_input(layer: &Layer) -> LayerInput {
    LayerInput {
        kind: layer.kind,
        options: layer
            .options
            .iter()
            .map(|o| OptInput { value: o.value.clone(), text: o.text.clone() })
            .collect(),
        source: layer.source.clone(),
    }
}

#[cfg(test)]
mod tests;
