//! The whole pipeline on token streams: it never panics, always answers with
//! code or spanned errors, and is cheap.

use proc_macro2::{LineColumn, TokenStream, TokenTree};
use proptest::prelude::*;

use super::expand;

const SEEDS: &[&str] = &[
    "input 32x32x1; conv 6 k5 tanh; avgpool 2; conv 16 k5 tanh; avgpool 2; flatten; dense 400 -> 120 tanh; dense 84 tanh; dense 10",
    "input 32x32x3; conv 32 k7 s2 floor; relu; flatten; dense 5408 -> 10",
    "input 32x32x3; conv 32 k3 p1 relu; batchnorm; maxpool 2; conv 64 k3 p1 relu; batchnorm; maxpool 2; conv 64 k3 p1 relu; maxpool 2; flatten; dense 64*4*4 -> 10",
    "input 28x28x1; conv 8 k5 s2 p2 floor relu; conv 16 k3 s2 p1 floor relu; conv 32 k3 s2 p1 relu; conv 32 k3 s2 p1 floor relu; globalavgpool; dense 10",
    "input 16x16x3; /// the stem\n r#type: conv 8 k3 relu; #[doc = \"norm\"] größe: batchnorm; flatten; fc: dense 10",
    "input 16x16x4; layer1: { residual { c1: conv 4 k3 p1 nobias; bn1: batchnorm; relu; c2: conv 4 k3 p1 } relu; residual { conv 8 k3 s2 p1 floor } down: shortcut { conv 8 k1 s2 floor; batchnorm } relu6 }; concat { conv 4 k1 } b: { maxpool 2; upsample 2 } {} silu; globalavgpool; dense 10",
    "input 8x8x2; residual { conv 2 k3 p1 }; concat { flatten } { globalmaxpool }; dense 2",
    "input 33x31x4; stem: conv 4 -> 8 k3x5 s2x1 p1x2 d1 g2 nobias floor leakyrelu 0.2; batchnorm 1e-3; conv 8 k3 same d2 sigmoid; maxpool 3 s2 p1 ceil; avgpool k2x2 s1 floor; globalmaxpool; dense 8 -> 16 relu; dropout 0.25; dense 4 softmax",
];

/// Words of the grammar, numbers of every size, and junk.
fn token() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "input",
        "conv",
        "maxpool",
        "avgpool",
        "globalavgpool",
        "globalmaxpool",
        "flatten",
        "dense",
        "batchnorm",
        "dropout",
        "relu",
        "tanh",
        "sigmoid",
        "softmax",
        "leakyrelu",
        "relu6",
        "silu",
        "upsample",
        "residual",
        "concat",
        "shortcut",
        "{ relu }",
        "{ conv 4 k1 ; batchnorm }",
        "{}",
        "same",
        "valid",
        "nobias",
        "floor",
        "ceil",
        "->",
        "*",
        ";",
        ";",
        ";",
        "x",
        "0x1c",
        "32u8",
        "1e5x1",
        "0.5",
        "1e-3",
        "2.0",
        "-",
        ",",
        ":",
        "lbl:",
        "#",
        "{}",
        "( k3 )",
        "[ 3 ]",
        "{ conv 8 k3 }",
        "pub",
        "struct",
        "Net",
        "\"s\"",
        "'c'",
        "::",
        "=>",
        "k",
        "s",
        "r#type:",
        "type:",
        "self:",
        "Self:",
        "_:",
        "_",
        "größe:",
        "r#match",
        "/// a doc comment\n",
        "#[doc = \"docs\"]",
        "#[inline]",
        "#![doc = \"inner\"]",
        "#",
        "!",
    ]);
    let prefix = prop::sample::select(vec!["k", "s", "p", "d", "g"]);
    prop_oneof![
        4 => words.prop_map(String::from),
        2 => (0usize..40).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{18,25}",
        2 => (0usize..70, 0usize..70, 0usize..9).prop_map(|(h, w, c)| format!("{h}x{w}x{c}")),
        1 => (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(h, w, c)| format!("{h}x{w}x{c}")),
        3 => (prefix.clone(), 0usize..12).prop_map(|(p, n)| format!("{p}{n}")),
        1 => (prefix.clone(), 0usize..12, 0usize..12).prop_map(|(p, a, b)| format!("{p}{a}x{b}")),
        1 => (prefix, any::<u64>()).prop_map(|(p, n)| format!("{p}{n}")),
    ]
}

/// Runs the pipeline; the output must parse back as items or an
/// expression, and every `compile_error!` in it must point into the input.
fn run(text: &str) -> Result<(), TestCaseError> {
    let Ok(stream) = text.parse::<TokenStream>() else { return Ok(()) };
    let Some(range) = extent(stream.clone()) else { return Ok(()) };
    let output = expand(stream);
    let mut errors = Vec::new();
    error_spans(output.clone(), &mut errors);
    for (start, end) in errors {
        let inside = range.0 <= start && end <= range.1;
        prop_assert!(inside, "an error of `{}` points at {:?}..{:?}, outside {:?}", text, start, end, range);
    }
    let parsed = syn::parse2::<syn::File>(output.clone()).is_ok() || syn::parse2::<syn::Expr>(output).is_ok();
    prop_assert!(parsed, "output of `{}` is not Rust", text);
    Ok(())
}

/// Where some tokens start and end, each as (line, column).
type Extent = ((usize, usize), (usize, usize));

/// Where the tokens start and end.
fn extent(tokens: TokenStream) -> Option<Extent> {
    let at = |lc: LineColumn| (lc.line, lc.column);
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    Some((at(tokens.first()?.span().start()), at(tokens.last()?.span().end())))
}

/// The start of each `compile_error!` and the end of its message.
fn error_spans(tokens: TokenStream, out: &mut Vec<Extent>) {
    let at = |lc: LineColumn| (lc.line, lc.column);
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(id) if id == "compile_error" => {
                if let Some(TokenTree::Group(message)) = tokens.get(i + 2) {
                    out.push((at(id.span().start()), at(message.span().end())));
                }
            }
            TokenTree::Group(group) => error_spans(group.stream(), out),
            _ => {}
        }
    }
}

fn wrap(body: String, item: bool) -> String {
    if item { format!("pub struct Net {{ {body} }}") } else { body }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Replace(usize, String),
    Insert(usize, String),
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), token()).prop_map(|(i, t)| Mutation::Replace(i, t)),
        (any::<usize>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

fn mutate(seed: &str, mutations: &[Mutation]) -> String {
    // Words as tokens; a doc comment keeps its line.
    let mut words: Vec<String> =
        seed.replace(';', " ; ").split(' ').filter(|w| !w.is_empty()).map(String::from).collect();
    for m in mutations {
        let n = words.len().max(1);
        match m {
            Mutation::Delete(i) if !words.is_empty() => drop(words.remove(i % n)),
            Mutation::Duplicate(i) if !words.is_empty() => words.insert(i % n, words[i % n].clone()),
            Mutation::Replace(i, t) if !words.is_empty() => words[i % n] = t.clone(),
            Mutation::Insert(i, t) => words.insert(i % (words.len() + 1), t.clone()),
            Mutation::Swap(i, j) if !words.is_empty() => words.swap(i % n, j % n),
            _ => {}
        }
    }
    words.join(" ")
}

#[test]
fn errors_point_into_the_input() {
    // One rejected label, one unknown option, one wrong size: each error
    // is checked by `run` to lie inside the input.
    for text in [
        "pub struct Net { input 28x28x1; type: conv 8 k3; conv 8 q3; flatten; dense 7 -> 10 }",
        "input 28x28x1; #[inline] conv 8 k3; flatten; dense 10",
        "pub struct Net { }",
    ] {
        run(text).unwrap();
        let output = expand(text.parse().unwrap()).to_string();
        assert!(output.contains("compile_error"), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn never_panics_on_random_layer_text(tokens in prop::collection::vec(token(), 0..24), item in any::<bool>()) {
        run(&wrap(tokens.join(" "), item))?;
    }

    #[test]
    fn never_panics_on_mutated_networks(
        seed in prop::sample::select(SEEDS),
        mutations in prop::collection::vec(mutation(), 1..6),
        item in any::<bool>(),
    ) {
        run(&wrap(mutate(seed, &mutations), item))?;
    }
}

#[test]
fn valid_networks_expand_without_errors() {
    for seed in SEEDS {
        let output = expand(wrap(seed.to_string(), true).parse().unwrap()).to_string();
        assert!(!output.contains("compile_error"), "{seed}: {output}");
    }
}

const VGG16: &str = "pub struct Vgg16 {
    input 224x224x3;
    conv 64 k3 p1 relu; conv 64 k3 p1 relu; maxpool 2;
    conv 128 k3 p1 relu; conv 128 k3 p1 relu; maxpool 2;
    conv 256 k3 p1 relu; conv 256 k3 p1 relu; conv 256 k3 p1 relu; maxpool 2;
    conv 512 k3 p1 relu; conv 512 k3 p1 relu; conv 512 k3 p1 relu; maxpool 2;
    conv 512 k3 p1 relu; conv 512 k3 p1 relu; conv 512 k3 p1 relu; maxpool 2;
    flatten;
    dense 512*7*7 -> 4096 relu; dropout 0.5;
    dense 4096 relu; dropout 0.5;
    dense 1000;
}";

/// Parse + check + expand of VGG16's 39 layers (with its fused activations).
/// `cargo test -p cnn-macros --release -- --ignored --nocapture expansion_time`
#[test]
#[ignore = "a timing, not a test: run it by name"]
fn expansion_time_of_vgg16() {
    let tokens: TokenStream = VGG16.parse().unwrap();
    let runs = 200;
    let start = std::time::Instant::now();
    let mut size = 0;
    for _ in 0..runs {
        size += expand(tokens.clone()).into_iter().count();
    }
    let per_run = start.elapsed() / runs;
    println!(
        "VGG16 parse + check + expand: {per_run:?} per invocation ({} top-level tokens)",
        size / runs as usize
    );
    assert!(!expand(tokens).to_string().contains("compile_error"));
}
