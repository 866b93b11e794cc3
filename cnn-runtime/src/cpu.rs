//! Kernels compiled for the vector width of the CPU they run on.
//!
//! The crate is built for the x86-64 baseline, SSE2, four lanes. `pulp`
//! detects AVX-512 or AVX2 + FMA once and runs a closure inside a function
//! compiled for them, so that the loops inlined into it are vectorised 16 or
//! 8 lanes wide; on other CPUs the closure runs as built. pulp holds the
//! `unsafe` of calling code compiled for features that were checked at run
//! time, as matrixmultiply does for its kernels.
//!
//! The kernels run this way use separate multiplies and adds, never fused,
//! so every width gives the same bits.

/// Runs `kernel`, whose loops must be inlined into it (`#[inline(always)]`
/// down to the loop), compiled for the widest vectors the CPU has.
#[inline(always)]
pub fn vectorized<R>(kernel: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(kernel)
}
