//! A residual or a concat inside a pass: its branches run as passes of
//! their own over the block's input, into the block's output.

use cnn_shape::{Node, Op};

use super::{At, Layer, Output, Pass, Prepared, Steps, fusable, grown};
use crate::cpu::Kernels;
use crate::layers::{Apply, Destination, Residual};
use crate::workspace::ThreadBuffers;

/// A residual or concat block of a pass, and what its nodes read.
pub(super) struct Block<'s> {
    pub node: &'s Node,
    /// The depth-first index of its first inner node.
    pub first: usize,
    pub steps: Steps<'s>,
    pub kernels: Kernels,
    pub prepared: &'s Prepared,
    pub n: usize,
}

impl Block<'_> {
    /// Runs the block on `x`, its input, into `out`, with the buffers of
    /// the next depth: a residual's shortcut first (into `merge`, or the
    /// input itself), then its body into `out`, the last layer adding the
    /// shortcut; a concat's branches into their channels of `out`, straight
    /// or through `merge`.
    pub fn run(&self, x: &[f32], out: &mut [f32], buffers: &mut ThreadBuffers) {
        let run =
            |nodes: &'static [Node], first, out: &mut [f32], buffers: &mut ThreadBuffers, destination| {
                let steps = Steps { nodes, layers: self.steps.layers, first };
                let (prepared, kernels, n, len) = (self.prepared, self.kernels, self.n, x.len());
                Pass {
                    steps,
                    kernels,
                    prepared,
                    n,
                    input: x,
                    buffers,
                    output: Output::Written(out),
                    at: At::Input,
                    len,
                    destination,
                }
                .run();
            };
        let size = |nodes: &[Node]| nodes.iter().map(Node::size).sum::<usize>();
        let mut merge = std::mem::take(&mut buffers.merge);
        match self.node.op {
            Op::Residual { body, shortcut, act } => {
                // The shortcut first, so that the body's last layer adds it
                // to each tile while the tile is in cache.
                let shortcut: &[f32] = match shortcut {
                    Some(nodes) => {
                        let values = &mut grown(&mut merge, out.len())[..out.len()];
                        run(nodes, self.first + size(body), values, buffers, Destination::Whole);
                        values
                    }
                    None => x,
                };
                let residual = Residual { shortcut, activation: act };
                run(body, self.first, out, buffers, Destination::AddTo(residual));
            }
            Op::Concat { branches, act } => {
                let (channels, mut at, mut first) = (self.node.info.output.channels(), 0, self.first);
                let pixels = out.len() / channels.max(1);
                for nodes in branches {
                    let width = nodes.last().map_or(self.node.input, |node| node.info.output).channels();
                    let steps = Steps { nodes, layers: self.steps.layers, first };
                    if ends_in_conv(steps, self.kernels) {
                        // Straight into its channels of the join.
                        let columns = Destination::Columns { stride: channels, offset: at };
                        run(nodes, first, out, buffers, columns);
                    } else {
                        let values: &[f32] = if nodes.is_empty() {
                            x
                        } else {
                            let values = &mut grown(&mut merge, pixels * width)[..pixels * width];
                            run(nodes, first, values, buffers, Destination::Whole);
                            values
                        };
                        let parts = values.chunks_exact(width.max(1));
                        for (pixel, part) in out.chunks_exact_mut(channels).zip(parts) {
                            pixel[at..at + width].copy_from_slice(part);
                        }
                    }
                    (at, first) = (at + width, first + size(nodes));
                }
                if let Some(act) = act {
                    act.apply(out, channels);
                }
            }
            _ => unreachable!("a block is a residual or a concat"),
        }
        buffers.merge = merge;
    }
}

/// Whether a branch's last layer (with the batchnorm and activation fused
/// into it) is a conv that can write into columns of a concat's output.
fn ends_in_conv(steps: Steps<'_>, kernels: Kernels) -> bool {
    steps.iter().enumerate().any(|(i, step)| {
        let ends = i + 1 + fusable(steps, i).2 == steps.len();
        matches!(step.layer, Some(Layer::Conv2d(conv)) if ends && conv.writes_columns(kernels))
    })
}
