//! Kernels compiled for the vector width of the CPU they run on.
//!
//! The crate is built for the x86-64 baseline, SSE2, four lanes. `pulp`
//! detects AVX-512 or AVX2 + FMA at run time (the standard library caches
//! the answer) and runs a closure inside a function
//! compiled for them, so that the loops inlined into it are vectorised 16 or
//! 8 lanes wide; on other CPUs the closure runs as built. pulp holds the
//! `unsafe` of calling code compiled for features that were checked at run
//! time, as matrixmultiply does for its kernels.
//!
//! Loops vectorised this way give the same bits at every width: the
//! compiler never fuses a multiply and an add on its own. The direct
//! convolution fuses them explicitly where [`has_fma`] says the CPU can
//! (results then differ from a CPU without FMA in the last bits, never
//! between thread counts).

/// Runs `kernel`, whose loops must be inlined into it (`#[inline(always)]`
/// down to the loop), compiled for the widest vectors the CPU has.
#[inline(always)]
pub fn vectorized<R>(kernel: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(kernel)
}

/// Whether `f32::mul_add` is one instruction inside [`vectorized`]: x86 with
/// AVX2 + FMA or AVX-512, or ARM with NEON. Elsewhere (wasm among them) it
/// may be a call into libm.
pub fn has_fma() -> bool {
    cfg!(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))
        && !matches!(pulp::Arch::new(), pulp::Arch::Scalar)
}

/// Whether [`vectorized`] code runs 16 lanes wide (AVX-512), with 32
/// vector registers rather than 16.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(pulp::Arch::new(), pulp::Arch::V4(_));
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Which kernels a pass may use: the fastest this CPU runs, or only the
/// portable ones every CPU runs (im2col + matrixmultiply for convolutions
/// and dense layers), so that this machine's tests cover both.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    #[default]
    Fastest,
    Portable,
}
