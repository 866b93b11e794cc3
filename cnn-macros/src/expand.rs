//! `quote!` only: the checked plan becomes a struct and its impls. All
//! numbers are written in; nothing here decides what the user could get wrong.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;
use syn::{Attribute, Visibility};

use crate::ast::ActKind;
use crate::check::{self, AxisOp, Op, Plan, Shape, Step};
use crate::table;

fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

fn shape_tokens(shape: Shape) -> TokenStream {
    match shape {
        Shape::Hwc(h, w, c) => {
            let (h, w, c) = (lit(h), lit(w), lit(c));
            quote!(::cnn::__private::Shape::Hwc(#h, #w, #c))
        }
        Shape::Flat(n) => {
            let n = lit(n);
            quote!(::cnn::__private::Shape::Flat(#n))
        }
    }
}

fn axis_tokens(axis: &AxisOp) -> TokenStream {
    let w = axis.window;
    let (n, k, s, pb, pa, d) =
        (lit(w.input), lit(w.kernel), lit(w.stride), lit(w.pad_before), lit(w.pad_after), lit(w.dilation));
    let ceil = axis.ceil;
    quote!(::cnn::__private::layers::Axis::new(#n, #k, #s, #pb, #pa, #d, #ceil))
}

fn field(step: &Step) -> Ident {
    Ident::new(&step.name, Span::call_site())
}

/// The code of one layer with parameters: its field, type, and how it is
/// initialised, loaded and saved.
struct FieldCode {
    field: Ident,
    doc: String,
    ty: TokenStream,
    init: TokenStream,
    load: TokenStream,
    save: TokenStream,
}

/// `index` is the layer's position in PyTorch's `nn.Sequential`.
fn field_code(step: &Step, index: usize, flat_from: Option<(usize, usize, usize)>) -> Option<FieldCode> {
    let p = quote!(::cnn::__private::layers);
    let field = field(step);
    let name = &step.name;
    let prefix = quote!(::cnn::__private::io::Prefix { field: #name, module: #index });
    let flat_from = match flat_from {
        Some((h, w, c)) => {
            let (h, w, c) = (lit(h), lit(w), lit(c));
            quote!(::core::option::Option::Some((#h, #w, #c)))
        }
        None => quote!(::core::option::Option::None),
    };
    let (ty, init, load, save) = match &step.op {
        Op::Conv(c) => {
            let (height, width) = (axis_tokens(&c.height), axis_tokens(&c.width));
            let (cin, cout, groups, bias) = (lit(c.in_channels), lit(c.out_channels), lit(c.groups), c.bias);
            let geometry = quote!(#p::ConvGeometry { height: #height, width: #width, in_channels: #cin, out_channels: #cout, groups: #groups });
            (
                quote!(#p::Conv2d),
                quote!(#p::Conv2d::new(#geometry, #bias, &mut rng)),
                quote!(tensors.conv(#prefix, #geometry, #bias)?),
                quote!(writer.conv(#name, &self.#field);),
            )
        }
        Op::Dense { inputs, outputs, bias } => {
            let (inputs, outputs) = (lit(*inputs), lit(*outputs));
            (
                quote!(#p::Dense),
                quote!(#p::Dense::new(#inputs, #outputs, #bias, &mut rng)),
                quote!(tensors.dense(#prefix, (#inputs, #outputs), #bias, #flat_from)?),
                quote!(writer.dense(#name, &self.#field);),
            )
        }
        Op::BatchNorm { channels, eps } => {
            let (channels, eps) = (lit(*channels), Literal::f32_unsuffixed(*eps as f32));
            (
                quote!(#p::BatchNorm),
                quote!(#p::BatchNorm::new(#channels, #eps)),
                quote!(tensors.batchnorm(#prefix, #channels, #eps, #flat_from)?),
                quote!(writer.batchnorm(#name, &self.#field);),
            )
        }
        _ => return None,
    };
    let doc = format!("`{}`: {} parameters, output {}.", step.source, step.params, step.output);
    Some(FieldCode { field, doc, ty, init, load, save })
}

/// The step of the runtime's inference pass for this layer.
fn infer_step(step: &Step) -> TokenStream {
    let p = quote!(::cnn::__private);
    let f = field(step);
    match &step.op {
        Op::Conv(_) => quote!(#p::Step::Conv(&self.#f)),
        Op::Dense { .. } => quote!(#p::Step::Dense(&self.#f)),
        Op::BatchNorm { .. } => quote!(#p::Step::BatchNorm(&self.#f)),
        Op::MaxPool(h, w) => {
            let (h, w) = (axis_tokens(h), axis_tokens(w));
            quote!(#p::Step::MaxPool(#p::layers::MaxPool2d::new(#h, #w)))
        }
        Op::AvgPool(h, w) => {
            let (h, w) = (axis_tokens(h), axis_tokens(w));
            quote!(#p::Step::AvgPool(#p::layers::AvgPool2d::new(#h, #w)))
        }
        Op::GlobalAvgPool => quote!(#p::Step::GlobalAvgPool),
        Op::GlobalMaxPool => quote!(#p::Step::GlobalMaxPool),
        Op::Flatten { .. } => quote!(#p::Step::Flatten),
        Op::Dropout(_) => quote!(#p::Step::Dropout),
        Op::Act(kind, alpha) => {
            let act = match kind {
                ActKind::Relu => quote!(Relu),
                ActKind::Tanh => quote!(Tanh),
                ActKind::Sigmoid => quote!(Sigmoid),
                ActKind::Softmax => quote!(Softmax),
                ActKind::LeakyRelu => {
                    let alpha = Literal::f32_unsuffixed(*alpha as f32);
                    quote!(LeakyRelu(#alpha))
                }
            };
            quote!(#p::Step::Act(#p::layers::Activation::#act))
        }
    }
}

/// The step of the runtime's training step for this layer.
fn train_step(step: &Step) -> TokenStream {
    let p = quote!(::cnn::__private);
    let f = field(step);
    match &step.op {
        Op::Conv(_) => quote!(#p::TrainStep::Conv(&mut self.#f)),
        Op::Dense { .. } => quote!(#p::TrainStep::Dense(&mut self.#f)),
        Op::BatchNorm { .. } => quote!(#p::TrainStep::BatchNorm(&mut self.#f)),
        Op::Dropout(probability) => {
            let probability = Literal::f32_unsuffixed(*probability as f32);
            quote!(#p::TrainStep::Dropout(#probability))
        }
        // The rest are the inference steps under the same names.
        _ => {
            let tokens = infer_step(step).to_string().replace(":: Step ::", ":: TrainStep ::");
            tokens.parse().expect("the inference step with another enum name")
        }
    }
}

fn layer_info(step: &Step) -> TokenStream {
    let (name, source, output, params) =
        (&step.name, &step.source, shape_tokens(step.output), lit(step.params));
    quote!(::cnn::__private::LayerInfo { name: #name, source: #source, output: #output, params: #params })
}

/// The struct, its inherent impl and its `Network` impl.
pub fn network(attrs: &[Attribute], vis: &Visibility, name: &Ident, plan: &Plan) -> TokenStream {
    let p = quote!(::cnn::__private);
    // With errors the input may be unknown; the code still type-checks.
    let input = plan.input.unwrap_or(Shape::Hwc(0, 0, 0));
    let output = plan.steps.last().map_or(input, |s| s.output);
    let Shape::Hwc(h, w, c) = input else { unreachable!("the input is HxWxC") };
    let (h, w, c) = (lit(h), lit(w), lit(c));
    let (input_len, output_len) = (lit(input.len()), lit(output.len()));
    let (input_shape, output_shape) = (shape_tokens(input), shape_tokens(output));
    let accuracy = match output {
        Shape::Flat(_) => quote!(#p::accuracy(scores.view(), labels)),
        Shape::Hwc(..) => quote! {
            let _ = (scores, labels);
            ::core::result::Result::Err(#p::Error::OutputNotFlat { output: Self::OUTPUT })
        },
    };
    let (output_type, into_output) = match output {
        Shape::Hwc(h, w, c) => {
            let (h, w, c) = (lit(h), lit(w), lit(c));
            (quote!(#p::ndarray::Array4<f32>), quote!(#p::into_array4(values, (n, #h, #w, #c))))
        }
        Shape::Flat(f) => {
            let f = lit(f);
            (quote!(#p::ndarray::Array2<f32>), quote!(#p::into_array2(values, (n, #f))))
        }
    };
    let params = lit(table::totals(plan).0);
    let doc = table::markdown(plan);
    let summary = table::summary(&name.to_string(), plan);
    let origins = check::flat_origins(plan);
    let fields: Vec<FieldCode> =
        plan.steps.iter().zip(origins).enumerate().filter_map(|(i, (s, o))| field_code(s, i, o)).collect();
    let field_decls =
        fields.iter().map(|FieldCode { field, doc, ty, .. }| quote!(#[doc = #doc] pub #field: #ty));
    let field_inits = fields.iter().map(|FieldCode { field, init, .. }| quote!(#field: #init));
    let field_loads = fields.iter().map(|FieldCode { field, load, .. }| quote!(#field: #load));
    let field_saves = fields.iter().map(|FieldCode { save, .. }| save);
    let steps = plan.steps.iter().map(infer_step);
    let train_steps = plan.steps.iter().map(train_step);
    let infos = plan.steps.iter().map(layer_info);

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
            pub const INPUT: #p::Shape = #input_shape;
            /// The shape of one output.
            pub const OUTPUT: #p::Shape = #output_shape;
            /// Trainable parameters, counted as PyTorch does.
            pub const PARAMETERS: usize = #params;
            /// Every layer after `input`.
            pub const LAYERS: &'static [#p::LayerInfo] = &[#(#infos),*];

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
                #p::check_input(&x, Self::INPUT)?;
                ::core::result::Result::Ok(self.__cnn_infer(x))
            }

            fn __cnn_infer(&self, x: #p::ndarray::ArrayView4<'_, f32>) -> #output_type {
                let n = x.dim().0;
                let steps = [#(#steps),*];
                let values = #p::infer(&steps, x, &self.__cnn_workspace);
                #into_output
            }

            /// Runs one image, `H*W*C` values in H, W, C order.
            pub fn predict(&self, x: &[f32; #input_len]) -> [f32; #output_len] {
                let y = self.__cnn_infer(#p::image_view(x, #h, #w, #c));
                let mut out = [0.0f32; #output_len];
                for (o, v) in out.iter_mut().zip(y.iter()) {
                    *o = *v;
                }
                out
            }

            /// Saves the weights as safetensors: keys `{field}.weight`, `{field}.bias`,
            /// `{field}.running_mean`, `{field}.running_var`; conv weights
            /// `[KH, KW, CIN/G, COUT]`, dense weights `[IN, OUT]` with the rows of a
            /// dense after `flatten` in H, W, C order, vectors `[C]`; all `F32`.
            pub fn save(&self, path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<(), #p::Error> {
                let mut writer = #p::io::TensorWriter::new();
                #(#field_saves)*
                writer.write(path.as_ref())
            }

            /// Loads weights written by [`save`](Self::save).
            pub fn load(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::core::result::Result<Self, #p::Error> {
                Self::__cnn_load(path.as_ref(), #p::io::Layout::Cnn)
            }

            /// Loads `safetensors.torch.save_file(model.state_dict(), path)` of the
            /// equivalent `nn.Sequential`: keys by module index, conv weights OIHW,
            /// dense weights `[OUT, IN]` with C, H, W columns after `flatten`;
            /// F32, F64, F16 or BF16.
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
                #p::check_input(&x, Self::INPUT)?;
                let mut steps = [#(#train_steps),*];
                #p::train_step(&mut steps, x, labels, optimizer, &mut self.__cnn_dropout)
            }

            /// The fraction of images whose largest output is at their label,
            /// in inference mode.
            pub fn accuracy(&self, x: #p::ndarray::ArrayView4<'_, f32>, labels: &[usize]) -> ::core::result::Result<f32, #p::Error> {
                let scores = self.forward(x)?;
                #accuracy
            }

            /// The layer table, like Keras's `model.summary()`.
            pub fn summary() -> ::std::string::String {
                ::std::string::String::from(#summary)
            }
        }

        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl #p::Network for #name {
            const INPUT: #p::Shape = #input_shape;
            const OUTPUT: #p::Shape = #output_shape;
            const PARAMETERS: usize = #params;
            const LAYERS: &'static [#p::LayerInfo] = #name::LAYERS;
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
