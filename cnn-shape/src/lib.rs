//! The one copy of `cnn`'s shape arithmetic and of the plan's types.
//!
//! The `cnn!` macro computes every shape with [`out_size`] and writes the
//! result down as a [`Plan`]: a tree of [`Node`]s, each with its geometry
//! and output shape worked out. The runtime walks that plan and never
//! computes a shape again. This crate has no dependencies, so the macro
//! and the runtime can both depend on it.

mod plan;
mod shape;
mod window;

pub use plan::{Activation, ConvGeometry, Node, Op, Param, Plan};
pub use shape::{LayerInfo, Shape};
pub use window::{Axis, Ratio, Rounding, SizeError, Window, out_size, product};
