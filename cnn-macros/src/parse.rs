//! Tokens to [`ast`](crate::ast) nodes. The header of an item is parsed with
//! syn; the layers are split at `;` and read token by token, so that a
//! mistake in one layer does not hide the mistakes in the others.

use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Ident, Lit, Token, braced};

use crate::ast::{
    Act, ActKind, Block, BlockShape, Body, Branch, Invocation, Item, ItemKind, Kind, Layer, Network,
    NetworkItem, Opt, OptValue, Pair,
};
use crate::diagnose;

impl Parse for Invocation {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // `#[attr]`, `pub` or `struct` starts the item form; anything else is
        // the layer list of the expression form.
        let item_form = input.peek(Token![#]) || input.peek(Token![pub]) || input.peek(Token![struct]);
        if item_form {
            let mut items = Vec::new();
            while !input.is_empty() {
                items.push(input.parse()?);
            }
            Ok(Invocation::Items(items))
        } else {
            Ok(Invocation::Expr(parse_network(input.parse()?)))
        }
    }
}

impl Parse for NetworkItem {
    // `#[attrs] pub struct Name { layer; layer; ... }`
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name = input.parse()?;
        let content;
        braced!(content in input);
        Ok(NetworkItem { attrs, vis, name, network: parse_network(content.parse()?) })
    }
}

/// A network's items, every error of every depth gathered.
pub fn parse_network(tokens: TokenStream) -> Network {
    let mut errors = Vec::new();
    let body = parse_body(tokens, &mut errors);
    Network { body, errors }
}

/// Splits the items at `;` and parses each, gathering errors.
fn parse_body(tokens: TokenStream, errors: &mut Vec<syn::Error>) -> Body {
    let mut body = Body { items: Vec::new(), tokens: tokens.clone() };
    let mut current = Vec::new();
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ';' => {
                if current.is_empty() {
                    errors.push(syn::Error::new(p.span(), "empty layer: remove this `;`"));
                } else {
                    body.items.push(parse_item(&std::mem::take(&mut current), errors));
                }
            }
            _ => current.push(token),
        }
    }
    if !current.is_empty() {
        body.items.push(parse_item(&current, errors));
    }
    body
}

/// `[/// docs] [label:] layer-or-block`; `None` (its errors in `errors`) if it does not parse.
fn parse_item(tokens: &[TokenTree], errors: &mut Vec<syn::Error>) -> Option<Item> {
    let item = split_docs(tokens).and_then(|(docs, tokens)| {
        let (label, rest) = split_label(&docs, tokens)?;
        let kind = match rest.first() {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                ItemKind::Block(parse_block(rest, errors).map_err(|e| vec![e])?)
            }
            Some(TokenTree::Ident(id)) if id == "residual" || id == "concat" => {
                ItemKind::Block(parse_block(rest, errors).map_err(|e| vec![e])?)
            }
            _ => ItemKind::Layer(parse_layer(rest, label.as_ref())?),
        };
        Ok(Item { docs, label, kind })
    });
    item.map_err(|e| errors.extend(e)).ok()
}

/// The label before an item, and the rest.
fn split_label<'t>(
    docs: &[Attribute],
    tokens: &'t [TokenTree],
) -> Result<(Option<Ident>, &'t [TokenTree]), Vec<syn::Error>> {
    let Some(first) = tokens.first() else {
        let last = docs.last().map(ToTokens::to_token_stream).unwrap_or_default();
        return Err(vec![syn::Error::new_spanned(last, "expected a layer after this doc comment")]);
    };
    let labelled = matches!(first, TokenTree::Ident(_))
        && matches!(tokens.get(1), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Alone);
    if !labelled {
        return Ok((None, tokens));
    }
    let TokenTree::Ident(id) = first else { unreachable!("checked above") };
    let label = label(id).map_err(|e| vec![e])?;
    if tokens.len() == 2 {
        return Err(vec![error_at(first, "expected a layer after this label, e.g. `fc1: dense 10`")]);
    }
    Ok((Some(label), &tokens[2..]))
}

/// `{ ITEMS }`, `residual { BODY } [LABEL:] [shortcut { ITEMS }] [ACT]` or
/// `concat [LABEL:] { A } [LABEL:] { B } ... [ACT]`.
fn parse_block(tokens: &[TokenTree], errors: &mut Vec<syn::Error>) -> syn::Result<Block> {
    let braces = |token: Option<&TokenTree>| match token {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => Some(g.stream()),
        _ => None,
    };
    let keyword: TokenStream = tokens[..1].iter().cloned().collect();
    let word = tokens[0].to_string();
    let mut pos = 1;
    let shape = match word.as_str() {
        "residual" => {
            let body = braces(tokens.get(1)).ok_or_else(|| {
                error_at(&tokens[0], "`residual` needs its body in braces: `residual { conv 64 k3 p1; ... }`")
            })?;
            pos = 2;
            let body = parse_body(body, errors);
            let (label, after) = match tokens.get(pos..) {
                Some([TokenTree::Ident(id), TokenTree::Punct(p), rest @ ..]) if p.as_char() == ':' => {
                    (Some(label(id)?), rest)
                }
                Some(rest) => (None, rest),
                None => (None, &[][..]),
            };
            let shortcut = match after {
                [TokenTree::Ident(id), rest @ ..] if id == "shortcut" => {
                    let items = braces(rest.first()).ok_or_else(|| {
                        syn::Error::new(
                            id.span(),
                            "`shortcut` needs its layers in braces: `shortcut { conv 128 k1 s2; batchnorm }`",
                        )
                    })?;
                    pos = tokens.len() - rest.len() + 1;
                    Some(Branch { label, body: parse_body(items, errors) })
                }
                _ if label.is_some() => {
                    return Err(error_at(
                        &tokens[pos],
                        "a label here names the shortcut: follow it with `shortcut { ... }`",
                    ));
                }
                _ => None,
            };
            BlockShape::Residual { body, shortcut }
        }
        "concat" => {
            let mut branches = Vec::new();
            loop {
                let (label, at) = match tokens.get(pos..) {
                    Some([TokenTree::Ident(id), TokenTree::Punct(p), ..]) if p.as_char() == ':' => {
                        (Some(label(id)?), pos + 2)
                    }
                    _ => (None, pos),
                };
                let Some(items) = braces(tokens.get(at)) else {
                    if label.is_some() {
                        return Err(error_at(
                            &tokens[pos],
                            "a label here names a branch: follow it with `{ ... }`",
                        ));
                    }
                    break;
                };
                branches.push(Branch { label, body: parse_body(items, errors) });
                pos = at + 1;
            }
            if branches.is_empty() {
                return Err(error_at(
                    &tokens[0],
                    "`concat` needs its branches in braces: `concat { conv 32 k1 } { conv 32 k3 p1 }`",
                ));
            }
            BlockShape::Concat(branches)
        }
        _ => {
            let items = braces(tokens.first()).expect("a sequence starts with braces");
            BlockShape::Seq(parse_body(items, errors))
        }
    };
    let act = match &tokens[pos..] {
        [] => None,
        [TokenTree::Ident(id), ..] if !matches!(shape, BlockShape::Seq(_)) => {
            let mut at = pos + 1;
            match ident_option(Kind::Act(ActKind::Relu), id, tokens, &mut at) {
                Ok(OptValue::Act(act)) if at == tokens.len() => Some(act),
                Ok(OptValue::Act(_)) => {
                    return Err(error_at(
                        &tokens[at],
                        "a block ends with its activation: separate items with `;`",
                    ));
                }
                _ => {
                    return Err(error_at(
                        &tokens[pos],
                        format!("expected an activation after the block, such as `relu`, found `{id}`"),
                    ));
                }
            }
        }
        [other, ..] => {
            return Err(error_at(
                other,
                format!("unexpected `{other}` after the block: separate items with `;`"),
            ));
        }
    };
    Ok(Block { keyword, shape, act })
}

fn error_at(token: &TokenTree, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(token.span(), message)
}

fn error_spanning(tokens: &[TokenTree], message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens.iter().cloned().collect::<TokenStream>(), message)
}

fn is_punct(token: Option<&TokenTree>, ch: char) -> bool {
    matches!(token, Some(TokenTree::Punct(p)) if p.as_char() == ch)
}

/// `keyword options...`; `label` only for messages.
fn parse_layer(rest: &[TokenTree], label: Option<&Ident>) -> Result<Layer, Vec<syn::Error>> {
    let keyword = match rest.first() {
        Some(TokenTree::Ident(id)) => id.clone(),
        Some(other) => {
            return Err(vec![error_at(
                other,
                format!("expected a layer keyword, found `{other}`\n{}", diagnose::layer_list()),
            )]);
        }
        None => {
            let at = label.map_or_else(Span::call_site, Ident::span);
            return Err(vec![syn::Error::new(at, "expected a layer after this label, e.g. `fc1: dense 10`")]);
        }
    };
    let word = keyword.to_string();
    let kind = Kind::from_keyword(&word)
        .ok_or_else(|| vec![syn::Error::new(keyword.span(), diagnose::unknown_layer(&word))])?;

    // A layer's parse stops at its first error; the other layers go on.
    let mut options = Vec::new();
    let mut pos = 1;
    while pos < rest.len() {
        let start = pos;
        let value = parse_option(kind, rest, &mut pos).map_err(|error| vec![error])?;
        let consumed = &rest[start..pos];
        options.push(Opt { value, tokens: consumed.iter().cloned().collect(), text: join_text(consumed) });
    }
    Ok(Layer { kind, options, tokens: rest.iter().cloned().collect(), source: join_text(rest) })
}

/// The doc comments (`#[doc = ...]` once lexed) before a layer, and the rest.
fn split_docs(tokens: &[TokenTree]) -> Result<(Vec<Attribute>, &[TokenTree]), Vec<syn::Error>> {
    let mut end = 0;
    while is_punct(tokens.get(end), '#')
        && matches!(tokens.get(end + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket)
    {
        end += 2;
    }
    if end == 0 {
        return Ok((Vec::new(), tokens));
    }
    let attrs =
        Attribute::parse_outer.parse2(tokens[..end].iter().cloned().collect()).map_err(|e| vec![e])?;
    let errors: Vec<syn::Error> = attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("doc"))
        .map(|attr| {
            syn::Error::new_spanned(attr, "only doc comments and `#[doc = \"...\"]` may come before a layer")
        })
        .collect();
    if errors.is_empty() { Ok((attrs, &tokens[end..])) } else { Err(errors) }
}

/// A label is a Rust identifier, raw (`r#type`) or not (`größe`), but not
/// a keyword or `_`: it becomes a field name.
fn label(id: &Ident) -> syn::Result<Ident> {
    let word = id.to_string();
    // Edition 2024 reserves `gen`, which syn, for older editions, accepts.
    let reserved = word == "gen";
    match syn::parse2::<Ident>(TokenTree::Ident(id.clone()).into()) {
        Ok(id) if !reserved => Ok(id),
        _ if word == "_" => Err(syn::Error::new(
            id.span(),
            "`_` cannot be a label: a label names the layer's field, e.g. `conv1: conv 8 k3`",
        )),
        _ if ["self", "Self", "super", "crate"].contains(&word.as_str()) => Err(syn::Error::new(
            id.span(),
            format!(
                "`{word}` is a Rust keyword and cannot be a label, not even as `r#{word}`: give the layer another name"
            ),
        )),
        _ => Err(syn::Error::new(
            id.span(),
            format!(
                "`{word}` is a Rust keyword and cannot be a label: write `r#{word}:` or give the layer another name"
            ),
        )),
    }
}

/// The tokens as the user would write them: `dense 64*4*4 -> 10`.
pub fn join_text(tokens: &[TokenTree]) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for token in tokens {
        let current = token.to_string();
        let glued = previous == "*" || current == "*" || (previous == "-" && current == ">");
        if !text.is_empty() && !glued {
            text.push(' ');
        }
        text.push_str(&current);
        previous = current;
    }
    text
}

/// Reads one option starting at `tokens[*pos]`, always moving past at least one token.
fn parse_option(kind: Kind, tokens: &[TokenTree], pos: &mut usize) -> syn::Result<OptValue> {
    let first = &tokens[*pos];
    *pos += 1;
    match first {
        TokenTree::Literal(_) => literal_option(first, tokens, pos),
        TokenTree::Ident(id) => ident_option(kind, id, tokens, pos),
        TokenTree::Punct(p)
            if p.as_char() == '-' && matches!(tokens.get(*pos), Some(TokenTree::Literal(_))) =>
        {
            let number = &tokens[*pos];
            *pos += 1;
            Err(error_spanning(&tokens[*pos - 2..*pos], format!("sizes cannot be negative: `-{number}`")))
        }
        TokenTree::Punct(p) if p.as_char() == ',' => {
            Err(error_at(first, "layers are separated by `;`, not `,`"))
        }
        other => Err(error_at(other, format!("unexpected `{other}` in a `{}` layer", kind.keyword()))),
    }
}

/// `32`, `28x28x1`, `3 ->`, `64*4*4 ->`, `0.5`, `1e-3`
fn literal_option(token: &TokenTree, tokens: &[TokenTree], pos: &mut usize) -> syn::Result<OptValue> {
    let TokenTree::Literal(literal) = token else { unreachable!("called on literals") };
    let text = literal.to_string();
    match Lit::new(literal.clone()) {
        Lit::Int(_) => {
            let sizes = literal_sizes(&text).map_err(|message| error_at(token, message))?;
            if sizes.len() > 1 {
                return Ok(OptValue::Sizes(sizes));
            }
            let mut factors = sizes;
            while is_punct(tokens.get(*pos), '*') {
                *pos += 1;
                match tokens.get(*pos) {
                    Some(next @ TokenTree::Literal(l)) => {
                        *pos += 1;
                        let sizes =
                            literal_sizes(&l.to_string()).map_err(|message| error_at(next, message))?;
                        match sizes[..] {
                            [factor] => factors.push(factor),
                            _ => {
                                return Err(error_at(
                                    next,
                                    format!("expected a number after `*`, found `{next}`"),
                                ));
                            }
                        }
                    }
                    _ => return Err(error_at(&tokens[*pos - 1], "expected a number after `*`")),
                }
            }
            if is_punct(tokens.get(*pos), '-') && is_punct(tokens.get(*pos + 1), '>') {
                *pos += 2;
                Ok(OptValue::Arrow(factors))
            } else if factors.len() > 1 {
                let product = &tokens[*pos - (2 * factors.len() - 1)..*pos];
                let message = format!(
                    "a product such as `{}` states the input size: follow it with `->`",
                    join_text(product)
                );
                Err(error_spanning(product, message))
            } else {
                Ok(OptValue::Number(factors[0]))
            }
        }
        Lit::Float(float) if float.suffix().is_empty() => {
            let value: f64 = float.base10_parse()?;
            Ok(OptValue::Float(value))
        }
        Lit::Float(_) => Err(error_at(token, format!("`{text}` is not a plain decimal number"))),
        _ => Err(error_at(
            token,
            format!("unexpected literal `{text}`: layers take numbers such as `32`, `28x28x1` or `0.5`"),
        )),
    }
}

/// A literal's `28` or `28x28x1` as numbers; an error for `0x1c`, `32u8`, `3_2`.
fn literal_sizes(text: &str) -> Result<Vec<usize>, String> {
    // Rust reads `0x28x1` as a hexadecimal literal: a size written so would
    // mean something else than it says.
    let radix = ["0x", "0o", "0b"].iter().any(|prefix| text.starts_with(prefix));
    if radix {
        return Err(format!(
            "`{text}` is not a plain decimal number: write sizes in decimal, e.g. `28x28x1`"
        ));
    }
    decimal_sizes(text)
}

/// `28` or `28x28x1` as numbers, also after an option's letter, where
/// `p0x3` (no padding in height, 3 in width) is an identifier, not hex.
fn decimal_sizes(text: &str) -> Result<Vec<usize>, String> {
    let parts: Vec<&str> = text.split('x').collect();
    if parts.iter().any(|part| part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit())) {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        return Err(if parts.len() == 1 && digits > 0 {
            format!("`{text}`: write sizes as plain numbers, without a suffix: `{}`", &text[..digits])
        } else {
            format!("`{text}` is not a number or a size such as `28x28x1`")
        });
    }
    parts
        .iter()
        .map(|part| part.parse::<usize>().map_err(|_| format!("`{part}` in `{text}` is too large")))
        .collect()
}

/// `k3`, `s2x1`, `p0`, `d2`, `g4`, `same`, `nobias`, `relu`, `leakyrelu 0.2`, ...
fn ident_option(kind: Kind, id: &Ident, tokens: &[TokenTree], pos: &mut usize) -> syn::Result<OptValue> {
    let word = id.to_string();
    let act = |kind| Ok(OptValue::Act(Act { kind, alpha: None }));
    match word.as_str() {
        "same" => return Ok(OptValue::Same),
        "valid" => return Ok(OptValue::Valid),
        "nobias" => return Ok(OptValue::NoBias),
        "floor" => return Ok(OptValue::Floor),
        "ceil" => return Ok(OptValue::Ceil),
        "relu" => return act(ActKind::Relu),
        "tanh" => return act(ActKind::Tanh),
        "sigmoid" => return act(ActKind::Sigmoid),
        "softmax" => return act(ActKind::Softmax),
        "relu6" => return act(ActKind::Relu6),
        "silu" => return act(ActKind::Silu),
        "leakyrelu" => {
            // An optional slope: `leakyrelu 0.2`.
            let alpha = match tokens.get(*pos) {
                Some(TokenTree::Literal(l)) => match Lit::new(l.clone()) {
                    Lit::Float(f) if f.suffix().is_empty() => f.base10_parse::<f64>().ok(),
                    _ => None,
                },
                _ => None,
            };
            *pos += alpha.is_some() as usize;
            return Ok(OptValue::Act(Act { kind: ActKind::LeakyRelu, alpha }));
        }
        _ => {}
    }
    let mut chars = word.chars();
    let prefix = chars.next().unwrap_or(' ');
    let rest = chars.as_str();
    if "kspdg".contains(prefix) && rest.starts_with(|c: char| c.is_ascii_digit()) {
        let sizes = decimal_sizes(rest).map_err(|message| {
            syn::Error::new(id.span(), message.replace(&format!("`{rest}`"), &format!("`{word}`")))
        })?;
        let pair: Pair = match sizes[..] {
            [n] => (n, n),
            [h, w] if prefix != 'g' => (h, w),
            _ => {
                let what = if prefix == 'g' {
                    "groups are one number, e.g. `g2`"
                } else {
                    "give a height and a width, e.g. `k3x5`"
                };
                return Err(syn::Error::new(id.span(), format!("`{word}`: {what}")));
            }
        };
        return Ok(match prefix {
            'k' => OptValue::Kernel(pair),
            's' => OptValue::Stride(pair),
            'p' => OptValue::Pad(pair),
            'd' => OptValue::Dilation(pair),
            _ => OptValue::Groups(pair.0),
        });
    }
    Err(syn::Error::new(id.span(), diagnose::unknown_option(kind, &word)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Network {
        parse_network(text.parse().unwrap())
    }

    fn layer(item: &Option<Item>) -> &Layer {
        match &item.as_ref().unwrap().kind {
            ItemKind::Layer(layer) => layer,
            ItemKind::Block(_) => panic!("a block"),
        }
    }

    #[test]
    fn reads_every_form_of_option() {
        let b = body(
            "input 28x28x1; c1: conv 3 -> 32 k3x5 s2 p1 d2 g1 nobias floor leakyrelu 0.2; dense 64*4*4 -> 10; dropout 0.5",
        );
        assert!(b.errors.is_empty(), "{:?}", b.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        let layers: Vec<&Layer> = b.body.items.iter().map(layer).collect();
        assert_eq!(layers[0].options[0].value, OptValue::Sizes(vec![28, 28, 1]));
        assert_eq!(b.body.items[1].as_ref().unwrap().label.as_ref().unwrap().to_string(), "c1");
        let values: Vec<OptValue> = layers[1].options.iter().map(|o| o.value.clone()).collect();
        assert_eq!(
            values,
            [
                OptValue::Arrow(vec![3]),
                OptValue::Number(32),
                OptValue::Kernel((3, 5)),
                OptValue::Stride((2, 2)),
                OptValue::Pad((1, 1)),
                OptValue::Dilation((2, 2)),
                OptValue::Groups(1),
                OptValue::NoBias,
                OptValue::Floor,
                OptValue::Act(Act { kind: ActKind::LeakyRelu, alpha: Some(0.2) }),
            ]
        );
        assert_eq!(layers[2].options[0].value, OptValue::Arrow(vec![64, 4, 4]));
        assert_eq!(layers[2].source, "dense 64*4*4 -> 10");
        assert_eq!(layers[3].options[0].value, OptValue::Float(0.5));
    }

    #[test]
    fn an_options_sizes_may_start_with_zero() {
        // Inception-v3's `Conv2d(.., kernel_size=(1, 7), padding=(0, 3))`:
        // `p0x3` is an identifier, where `0x3` alone would be hexadecimal.
        let b = body("input 17x17x8; conv 8 k1x7 p0x3; maxpool 3 s1x2 p0x1 ceil; conv 8 k3x1 p1x0 d0x1");
        let messages: Vec<String> = b.errors.iter().map(|e| e.to_string()).collect();
        let layers: Vec<&Layer> = b.body.items.iter().map(layer).collect();
        assert_eq!(layers[1].options[2].value, OptValue::Pad((0, 3)));
        assert_eq!(layers[2].options[2].value, OptValue::Pad((0, 1)));
        assert_eq!(layers[3].options[2].value, OptValue::Pad((1, 0)));
        // A zero dilation still parses here; the check refuses it.
        assert_eq!(layers[3].options[3].value, OptValue::Dilation((0, 1)));
        assert!(messages.is_empty(), "{messages:#?}");
    }

    #[test]
    fn gathers_errors_from_every_layer() {
        let b = body("input 0x1c; convv 3; conv 32u8 k3; maxpool 2 q3 q4;; dense 10, relu, tanh");
        let messages: Vec<String> = b.errors.iter().map(|e| e.to_string()).collect();
        // One per layer at most: a layer's parse stops at its first error.
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages[0].contains("not a plain decimal"));
        assert!(messages[1].contains("did you mean `conv`"));
        assert!(messages[2].contains("without a suffix"));
        assert!(messages[3].contains("unknown option `q3`"));
        assert!(messages[4].contains("empty layer"));
        assert!(messages[5].contains("separated by `;`"));
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn reads_blocks_nested_and_labelled() {
        let text = "input 8x8x4; layer1: { residual { c1: conv 4 k3 p1; bn1: batchnorm } down: shortcut { conv 4 k1 } relu; \
                    concat { conv 2 k1 } b: { upsample 2; maxpool 2 } {} leakyrelu 0.2 }";
        let network = parse_network(text.parse().unwrap());
        assert!(
            network.errors.is_empty(),
            "{:?}",
            network.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
        let item = network.body.items[1].as_ref().unwrap();
        assert_eq!(item.label.as_ref().unwrap().to_string(), "layer1");
        let ItemKind::Block(Block { shape: BlockShape::Seq(seq), .. }) = &item.kind else {
            panic!("a sequence")
        };
        let Some(ItemKind::Block(residual)) = seq.items[0].as_ref().map(|i| &i.kind) else {
            panic!("a block")
        };
        let BlockShape::Residual { body, shortcut: Some(shortcut) } = &residual.shape else {
            panic!("a residual")
        };
        assert_eq!((body.items.len(), shortcut.label.as_ref().unwrap().to_string()), (2, "down".into()));
        assert_eq!(residual.act.map(|a| a.kind), Some(ActKind::Relu));
        let Some(ItemKind::Block(concat)) = seq.items[1].as_ref().map(|i| &i.kind) else { panic!("a block") };
        let BlockShape::Concat(branches) = &concat.shape else { panic!("a concat") };
        assert_eq!(branches.iter().map(|b| b.body.items.len()).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(branches[1].label.as_ref().unwrap().to_string(), "b");
        assert_eq!(concat.act, Some(Act { kind: ActKind::LeakyRelu, alpha: Some(0.2) }));
    }

    #[test]
    fn errors_inside_blocks_are_gathered() {
        let text = "input 8x8x4; residual { conv 4 k3 q1 } shortcut { convv 4 } relu; concat { relu 3 } x: ; residual conv";
        let network = parse_network(text.parse().unwrap());
        let messages: Vec<String> = network.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].contains("unknown option `q1`"), "{messages:#?}");
        assert!(messages[1].contains("did you mean `conv`"), "{messages:#?}");
    }
}
