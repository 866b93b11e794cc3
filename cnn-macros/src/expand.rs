//! `quote!` only: the checked plan becomes a struct, a constant of the plan
//! that the runtime walks, and the impls. All numbers are written in once,
//! in the plan; nothing here decides what the user could get wrong.

use cnn_shape::{Activation, Axis, ConvGeometry, Op, Shape};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Visibility};

use crate::ast::Layer;
use crate::check::{Plan, Step, StepKind};
use crate::table;

fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

fn shape_tokens(shape: Shape) -> TokenStream {
    let p = quote!(::cnn::__private::plan);
    match shape {
        Shape::Hwc(h, w, c) => {
            let (h, w, c) = (lit(h), lit(w), lit(c));
            quote!(#p::Shape::Hwc(#h, #w, #c))
        }
        Shape::Flat(n) => {
            let n = lit(n);
            quote!(#p::Shape::Flat(#n))
        }
    }
}

fn axis_tokens(axis: &Axis) -> TokenStream {
    let Axis { input, kernel, stride, pad_before, pad_after, dilation, output } = *axis;
    let [n, k, s, pb, pa, d, o] = [input, kernel, stride, pad_before, pad_after, dilation, output].map(lit);
    quote! {
        ::cnn::__private::plan::Axis {
            input: #n, kernel: #k, stride: #s, pad_before: #pb, pad_after: #pa, dilation: #d, output: #o
        }
    }
}

fn op_tokens(op: &Op) -> TokenStream {
    let p = quote!(::cnn::__private::plan);
    match *op {
        Op::Conv { geometry, bias } => {
            let ConvGeometry { height, width, in_channels, out_channels, groups } = geometry;
            let (height, width) = (axis_tokens(&height), axis_tokens(&width));
            let [cin, cout, groups] = [in_channels, out_channels, groups].map(lit);
            quote! {
                #p::Op::Conv {
                    geometry: #p::ConvGeometry {
                        height: #height, width: #width, in_channels: #cin, out_channels: #cout, groups: #groups
                    },
                    bias: #bias,
                }
            }
        }
        Op::Dense { inputs, outputs, bias } => {
            let (inputs, outputs) = (lit(inputs), lit(outputs));
            quote!(#p::Op::Dense { inputs: #inputs, outputs: #outputs, bias: #bias })
        }
        Op::BatchNorm { channels, eps } => {
            let (channels, eps) = (lit(channels), Literal::f32_unsuffixed(eps));
            quote!(#p::Op::BatchNorm { channels: #channels, eps: #eps })
        }
        Op::MaxPool { height, width } => {
            let (height, width) = (axis_tokens(&height), axis_tokens(&width));
            quote!(#p::Op::MaxPool { height: #height, width: #width })
        }
        Op::AvgPool { height, width } => {
            let (height, width) = (axis_tokens(&height), axis_tokens(&width));
            quote!(#p::Op::AvgPool { height: #height, width: #width })
        }
        Op::GlobalAvgPool => quote!(#p::Op::GlobalAvgPool),
        Op::GlobalMaxPool => quote!(#p::Op::GlobalMaxPool),
        Op::Flatten => quote!(#p::Op::Flatten),
        Op::Dropout(probability) => {
            let probability = Literal::f32_unsuffixed(probability);
            quote!(#p::Op::Dropout(#probability))
        }
        Op::Upsample { height, width } => {
            let (height, width) = (lit(height), lit(width));
            quote!(#p::Op::Upsample { height: #height, width: #width })
        }
        Op::Residual { .. } | Op::Concat { .. } => unreachable!("blocks are steps of their own"),
        Op::Act(act) => {
            let act = activation_tokens(act);
            quote!(#p::Op::Act(#act))
        }
    }
}

fn activation_tokens(act: Activation) -> TokenStream {
    let act = match act {
        Activation::Relu => quote!(Relu),
        Activation::Tanh => quote!(Tanh),
        Activation::Sigmoid => quote!(Sigmoid),
        Activation::Softmax => quote!(Softmax),
        Activation::Relu6 => quote!(Relu6),
        Activation::Silu => quote!(Silu),
        Activation::LeakyRelu(alpha) => {
            let alpha = Literal::f32_unsuffixed(alpha);
            quote!(LeakyRelu(#alpha))
        }
    };
    quote!(::cnn::__private::plan::Activation::#act)
}

/// An activation as written: `relu`, `leakyrelu 0.2`.
fn activation_text(act: Activation) -> String {
    match act {
        Activation::LeakyRelu(alpha) => format!("leakyrelu {alpha:?}"),
        _ => act.keyword().to_string(),
    }
}

/// A layer as written, for its field's name and docs.
pub struct LayerSyntax<'a> {
    pub label: Option<&'a Ident>,
    pub docs: &'a [Attribute],
    pub layer: &'a Layer,
}

/// A layer with parameters: its field, as the user named it or by its path.
struct Field<'a> {
    ident: Ident,
    docs: &'a [Attribute],
    doc: String,
    kind: Ident,
    /// Its node in the plan's constants, `Self::__CNN_NODES[3]`.
    node: TokenStream,
}

/// The plan's constants, a `[Node; N]` per sequence of nodes, and what is
/// read off them: the fields in slot order and the `LAYERS` entries.
struct Emit<'a> {
    layers: &'a [LayerSyntax<'a>],
    consts: Vec<TokenStream>,
    fields: Vec<Field<'a>>,
    infos: Vec<TokenStream>,
    /// Branch constants named so far.
    branches: usize,
}

fn info_tokens(name: &str, source: &str, output: Shape, params: usize) -> TokenStream {
    let (output, params) = (shape_tokens(output), lit(params));
    quote!(::cnn::__private::plan::LayerInfo { name: #name, source: #source, output: #output, params: #params })
}

fn act_tokens(act: Option<Activation>) -> TokenStream {
    match act {
        Some(act) => {
            let act = activation_tokens(act);
            quote!(::core::option::Option::Some(#act))
        }
        None => quote!(::core::option::Option::None),
    }
}

impl<'a> Emit<'a> {
    /// `const #name: [Node; N]` for `steps`; returns the constant's path.
    fn nodes(&mut self, steps: &[Step], name: Ident) -> TokenStream {
        let p = quote!(::cnn::__private::plan);
        let mut nodes = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let input = shape_tokens(step.input);
            let index = lit(i);
            let (op, param) = match &step.kind {
                StepKind::Op(op) => {
                    self.infos.push(info_tokens(&step.name, &step.source, step.output, step.params));
                    (op_tokens(op), self.field(step, quote!(Self::#name[#index])))
                }
                StepKind::Residual { body, shortcut, act } => {
                    let body = self.branch(body);
                    let shortcut = match shortcut {
                        Some(steps) => {
                            let path = self.branch(steps);
                            quote!(::core::option::Option::Some(&#path))
                        }
                        None => quote!(::core::option::Option::None),
                    };
                    self.merge(step, *act);
                    let act = act_tokens(*act);
                    (quote!(#p::Op::Residual { body: &#body, shortcut: #shortcut, act: #act }), None)
                }
                StepKind::Concat { branches, act } => {
                    let branches: Vec<TokenStream> = branches.iter().map(|b| self.branch(b)).collect();
                    self.merge(step, *act);
                    let act = act_tokens(*act);
                    (quote!(#p::Op::Concat { branches: &[#(&#branches),*], act: #act }), None)
                }
            };
            let info = info_tokens(&step.name, &step.source, step.output, step.params);
            let param = param.unwrap_or_else(|| quote!(::core::option::Option::None));
            nodes.push(quote!(#p::Node { op: #op, input: #input, info: #info, param: #param }));
        }
        let len = lit(nodes.len());
        self.consts.push(quote! {
            #[doc(hidden)]
            pub const #name: [#p::Node; #len] = [#(#nodes),*];
        });
        quote!(Self::#name)
    }

    /// A block's branch as a constant of its own.
    fn branch(&mut self, steps: &[Step]) -> TokenStream {
        self.branches += 1;
        let name = Ident::new(&format!("__CNN_BRANCH_{}", self.branches), Span::call_site());
        self.nodes(steps, name)
    }

    /// The `LAYERS` entry of a block's merge; the block's activation,
    /// which belongs to the block, is part of it (`residual + shortcut relu`).
    fn merge(&mut self, step: &Step, act: Option<Activation>) {
        let source = match act {
            Some(act) => format!("{} {}", step.source, activation_text(act)),
            None => step.source.clone(),
        };
        self.infos.push(info_tokens(&step.name, &source, step.output, 0));
    }

    /// The field of a layer with parameters, and its node's `param`.
    fn field(&mut self, step: &Step, node: TokenStream) -> Option<TokenStream> {
        let field = step.field.as_ref()?;
        let syntax = step.layer.map(|i| &self.layers[i]);
        // A top-level label is the field as the user wrote it (`r#type`);
        // a path of names is a plain identifier.
        let ident = match syntax.and_then(|s| s.label).filter(|_| step.depth == 0) {
            Some(label) => label.clone(),
            None => syn::parse_str::<Ident>(field)
                .unwrap_or_else(|_| Ident::new("__cnn_unnamed", Span::call_site())),
        };
        let kind = match step.kind {
            StepKind::Op(Op::Conv { .. }) => "Conv2d",
            StepKind::Op(Op::Dense { .. }) => "Dense",
            _ => "BatchNorm",
        };
        let slot = lit(self.fields.len());
        self.fields.push(Field {
            ident,
            docs: syntax.map_or(&[], |s| s.docs),
            doc: format!("`{}`: {} parameters, output {}.", step.source, step.params, step.output),
            kind: Ident::new(kind, Span::call_site()),
            node,
        });
        let (torch, field) = (&step.torch, field.as_str());
        let flat_from = match step.flat_from {
            Some((h, w, c)) => {
                let (h, w, c) = (lit(h), lit(w), lit(c));
                quote!(::core::option::Option::Some((#h, #w, #c)))
            }
            None => quote!(::core::option::Option::None),
        };
        Some(quote! {
            ::core::option::Option::Some(::cnn::__private::plan::Param {
                slot: #slot, field: #field, torch: #torch, flat_from: #flat_from
            })
        })
    }
}

/// The struct, its inherent impl and its `Network` impl.
pub fn network(
    attrs: &[Attribute],
    vis: &Visibility,
    name: &Ident,
    layers: &[LayerSyntax<'_>],
    plan: &Plan,
) -> TokenStream {
    let p = quote!(::cnn::__private);
    // With errors the input may be unknown; the code still type-checks.
    let input = plan.input.unwrap_or(Shape::Hwc(0, 0, 0));
    let output = plan.steps.last().map_or(input, |s| s.output);
    let (input_len, output_len) = (lit(input.len()), lit(output.len()));
    let (input_shape, output_shape) = (shape_tokens(input), shape_tokens(output));
    let output_type = match output {
        Shape::Hwc(..) => quote!(#p::ndarray::Array4<f32>),
        Shape::Flat(_) => quote!(#p::ndarray::Array2<f32>),
    };
    let params = lit(table::totals(plan).0);
    let doc = table::markdown(plan);
    let summary = table::summary(&name.to_string(), plan);
    let python = crate::python::source(&name.unraw().to_string(), plan);

    let mut emit = Emit { layers, consts: Vec::new(), fields: Vec::new(), infos: Vec::new(), branches: 0 };
    emit.nodes(&plan.steps, Ident::new("__CNN_NODES", Span::call_site()));
    let Emit { consts, fields, infos, .. } = emit;
    let field_decls = fields.iter().map(
        |Field { ident, docs, doc, kind, .. }| quote!(#[doc = #doc] #(#docs)* pub #ident: #p::layers::#kind),
    );
    let field_inits = fields.iter().map(
        |Field { ident, kind, node, .. }| quote!(#ident: #p::layers::#kind::from_node(&#node, &mut rng)),
    );
    let field_loads = fields.iter().map(
        |Field { ident, kind, node, .. }| quote!(#ident: #p::layers::#kind::load(&mut tensors, &#node)?),
    );
    let layers: Vec<TokenStream> =
        fields.iter().map(|Field { ident, kind, .. }| quote!(#p::Layer::#kind(&self.#ident))).collect();
    let layers_mut =
        fields.iter().map(|Field { ident, kind, .. }| quote!(#p::LayerMut::#kind(&mut self.#ident)));

    quote! {
        #(#attrs)*
        #[doc = #doc]
        #vis struct #name {
            #(#field_decls,)*
            #[doc(hidden)]
            __cnn_workspace: #p::Workspace,
            #[doc(hidden)]
            __cnn_dropout: #p::DropoutRng,
        }

        impl #name {
            /// The shape of one input image.
            pub const INPUT: #p::plan::Shape = #input_shape;
            /// The shape of one output.
            pub const OUTPUT: #p::plan::Shape = #output_shape;
            /// Trainable parameters, counted as PyTorch does.
            pub const PARAMETERS: usize = #params;
            /// Every layer after `input`.
            pub const LAYERS: &'static [#p::plan::LayerInfo] = &[#(#infos),*];
            #(#consts)*
            #[doc(hidden)]
            pub const __CNN_PLAN: #p::plan::Plan = #p::plan::Plan { input: #input_shape, nodes: &Self::__CNN_NODES };

            /// The network initialised as PyTorch does, from seed 0.
            pub fn new() -> Self {
                Self::with_seed(0)
            }

            /// The network initialised as PyTorch does, from `seed`.
            #[allow(unused_mut, unused_variables)]
            pub fn with_seed(seed: u64) -> Self {
                let mut rng = #p::init::rng(seed);
                Self {
                    #(#field_inits,)*
                    __cnn_workspace: ::core::default::Default::default(),
                    __cnn_dropout: #p::DropoutRng::new(seed),
                }
            }

            /// Runs a batch `(N, H, W, C)` in inference mode.
            pub fn forward(&self, x: #p::ndarray::ArrayView4<'_, f32>) -> ::core::result::Result<#output_type, #p::Error> {
                #p::forward(&Self::__CNN_PLAN, &[#(#layers),*], x, &self.__cnn_workspace)
            }

            /// Runs one image, `H*W*C` values in H, W, C order.
            pub fn predict(&self, x: &[f32; #input_len]) -> [f32; #output_len] {
                #p::predict(&Self::__CNN_PLAN, &[#(#layers),*], x, &self.__cnn_workspace)
            }

            /// Saves the weights as safetensors: keys `{field}.weight`, `{field}.bias`,
            /// `{field}.running_mean`, `{field}.running_var`; conv weights
            /// `[KH, KW, CIN/G, COUT]`, dense weights `[IN, OUT]` with the rows of a
            /// dense after `flatten` in H, W, C order, vectors `[C]`; all `F32`.
            pub fn save(&self, path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<(), #p::Error> {
                #p::io::save(&Self::__CNN_PLAN, &[#(#layers),*], path.as_ref())
            }

            /// Writes the network as an ONNX model (opset 17) that computes what
            /// [`forward`](Self::forward) computes, as `torch.onnx.export` would:
            /// input `input` NCHW `(N, C, H, W)` with a dynamic batch, output
            /// `output`, weights in PyTorch's layout. onnxruntime, Triton and every
            /// other ONNX server can run it.
            pub fn save_onnx(&self, path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<(), #p::Error> {
                #p::onnx::save(&Self::__CNN_PLAN, &[#(#layers),*], path.as_ref())
            }

            /// Loads weights written by [`save`](Self::save).
            pub fn load(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<Self, #p::Error> {
                Self::__cnn_load(path.as_ref(), #p::io::Layout::Cnn)
            }

            /// Loads `safetensors.torch.save_file(model.state_dict(), path)` of the
            /// equivalent PyTorch module: keys by label or `nn.Sequential` index,
            /// conv weights OIHW, dense weights `[OUT, IN]` with C, H, W columns
            /// after `flatten`; F32, F64, F16 or BF16.
            pub fn load_pytorch(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<Self, #p::Error> {
                Self::__cnn_load(path.as_ref(), #p::io::Layout::PyTorch)
            }

            fn __cnn_load(path: &::std::path::Path, layout: #p::io::Layout) -> ::core::result::Result<Self, #p::Error> {
                let file = #p::io::WeightFile::read(path)?;
                #[allow(unused_mut)]
                let mut tensors = file.tensors(layout)?;
                let network = Self {
                    #(#field_loads,)*
                    __cnn_workspace: ::core::default::Default::default(),
                    __cnn_dropout: ::core::default::Default::default(),
                };
                tensors.finish()?;
                ::core::result::Result::Ok(network)
            }

            /// One step of mini-batch gradient descent on the mean cross-entropy
            /// between the output and `labels`; returns that mean loss. A final
            /// `softmax` is taken with the loss; otherwise the output is logits.
            pub fn train_step(
                &mut self,
                x: #p::ndarray::ArrayView4<'_, f32>,
                labels: &[usize],
                optimizer: &mut (impl #p::optim::Optimizer + ?Sized),
            ) -> ::core::result::Result<f32, #p::Error> {
                let mut layers = [#(#layers_mut),*];
                #p::train_step(&Self::__CNN_PLAN, &mut layers, x, labels, optimizer, &mut self.__cnn_dropout)
            }

            /// The fraction of images whose largest output is at their label,
            /// in inference mode.
            pub fn accuracy(&self, x: #p::ndarray::ArrayView4<'_, f32>, labels: &[usize]) -> ::core::result::Result<f32, #p::Error> {
                #p::accuracy(&Self::__CNN_PLAN, &[#(#layers),*], x, labels, &self.__cnn_workspace)
            }

            /// Runs later passes through the portable kernels only (or the
            /// fastest again): for tests that cover both on one machine.
            #[doc(hidden)]
            pub fn __cnn_set_kernels(&self, kernels: #p::Kernels) {
                self.__cnn_workspace.set_kernels(kernels)
            }

            /// Python source of an `nn.Module` class named like this struct, whose
            /// `state_dict` is what [`load_pytorch`](Self::load_pytorch) reads: train
            /// it with PyTorch's own tools, save it with `safetensors.torch.save_file`,
            /// load it back here.
            pub fn pytorch() -> &'static str {
                #python
            }

            /// The layer table, like Keras's `model.summary()`.
            pub fn summary() -> ::std::string::String {
                ::std::string::String::from(#summary)
            }
        }

        #[automatically_derived]
        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self::new()
            }
        }

        #[automatically_derived]
        impl #p::Network for #name {
            const INPUT: #p::plan::Shape = #input_shape;
            const OUTPUT: #p::plan::Shape = #output_shape;
            const PARAMETERS: usize = #params;
            const LAYERS: &'static [#p::plan::LayerInfo] = #name::LAYERS;
            type Output = #output_type;

            fn forward(&self, x: #p::ndarray::ArrayView4<'_, f32>) -> ::core::result::Result<#output_type, #p::Error> {
                #name::forward(self, x)
            }

            fn with_seed(seed: u64) -> Self {
                #name::with_seed(seed)
            }
        }
    }
}
