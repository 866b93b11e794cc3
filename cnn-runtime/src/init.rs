//! Seeded initialisation, as PyTorch does it by default.
//!
//! `nn.Conv2d` and `nn.Linear` draw weights from `kaiming_uniform_(a=sqrt(5))`
//! and biases from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`; both bounds come to
//! `1/sqrt(fan_in)`. The stream is ChaCha8, so a seed gives the same network
//! on every platform and version of this crate.

use ndarray::{Array, Dimension};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator every layer draws from, in layer order.
pub type InitRng = ChaCha8Rng;

/// The generator for a network built `with_seed(seed)`.
pub fn rng(seed: u64) -> InitRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// An array of the given shape, uniform in `-1/sqrt(fan_in)..1/sqrt(fan_in)`.
pub fn uniform<D: Dimension>(shape: D, fan_in: usize, rng: &mut InitRng) -> Array<f32, D> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    Array::from_shape_simple_fn(shape, || rng.random_range(-bound..bound))
}
