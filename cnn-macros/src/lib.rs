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
mod parse;
mod resolve;
mod spec;
mod table;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Ident, Visibility};

use ast::{Body, Invocation, Layer};
use ctxt::{Ctxt, LayerInput, OptInput, Site};

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
            items.iter().map(|item| network(&item.attrs, &item.vis, &item.name, &item.body)).collect()
        }
        Ok(Invocation::Expr(body)) => {
            let name = Ident::new("__CnnNetwork", Span::call_site());
            let network = network(&[], &Visibility::Inherited, &name, &body);
            quote!({ #network #name::new() })
        }
    }
}

fn network(attrs: &[Attribute], vis: &Visibility, name: &Ident, body: &Body) -> TokenStream {
    let layers: Vec<Option<LayerInput>> =
        body.layers.iter().map(|layer| layer.as_ref().map(layer_input)).collect();
    let mut cx = Ctxt::default();
    let plan = check::check(&layers, &mut cx);
    let parse_errors = body.errors.iter().map(syn::Error::to_compile_error);
    let check_errors = cx.errors.iter().map(|d| {
        let tokens = match d.site {
            Site::Body => body.tokens.clone(),
            Site::Layer(i) => body.layers[i].as_ref().map_or_else(TokenStream::new, |l| l.tokens.clone()),
            Site::Option(i, j) => {
                body.layers[i].as_ref().map_or_else(TokenStream::new, |l| l.options[j].tokens.clone())
            }
        };
        // An empty body has no tokens to point at: the struct's name stands in.
        let tokens = if tokens.is_empty() { quote!(#name) } else { tokens };
        syn::Error::new_spanned(tokens, &d.message).to_compile_error()
    });
    let code = expand::network(attrs, vis, name, body, &plan);
    quote!(#(#parse_errors)* #(#check_errors)* #code)
}

fn layer_input(layer: &Layer) -> LayerInput {
    LayerInput {
        kind: layer.kind,
        label: layer.label.as_ref().map(|label| label.unraw().to_string()),
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
