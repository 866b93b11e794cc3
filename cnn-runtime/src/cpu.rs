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

/// Asks for the cache line of `values[at]`, if there is one, to be
/// fetched into L1 (`prefetcht0` on x86-64; nothing elsewhere).
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(values: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(value) = values.get(at) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is in the x86-64 baseline, and a prefetch neither
        // reads memory the program sees nor faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, at);
}

/// Whether `f32::mul_add` is one instruction inside code dispatched for
/// `kernels`: x86 with AVX2 + FMA or AVX-512, or ARM with NEON. Elsewhere
/// (wasm among them) it may be a call into libm.
pub fn has_fma(kernels: Kernels) -> bool {
    cfg!(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))
        && !matches!(kernels.arch(), pulp::Arch::Scalar)
}

/// Whether code dispatched for `kernels` runs 16 lanes wide (AVX-512),
/// with 32 vector registers rather than 16.
pub fn has_avx512(kernels: Kernels) -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(kernels.arch(), pulp::Arch::V4(_));
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The `f32` lanes of a vector in code dispatched for `kernels`: 16 with
/// AVX-512, 8 with AVX2, else 4 (SSE2, NEON).
pub fn lanes(kernels: Kernels) -> usize {
    #[cfg(target_arch = "x86_64")]
    return match kernels.arch() {
        pulp::Arch::V4(_) => 16,
        pulp::Arch::V3(_) => 8,
        _ => 4,
    };
    #[cfg(not(target_arch = "x86_64"))]
    4
}

/// Which kernels a pass may use: the fastest this CPU runs, or those of a
/// smaller CPU, so that this machine's tests cover every variant.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The widest vectors the CPU has (AVX-512 here: 16 lanes, two vectors
    /// of pixels at a time in the direct conv).
    #[default]
    Fastest,
    /// AVX2 + FMA (8 lanes), where the CPU has it.
    Avx2,
    /// The x86-64 baseline, without FMA: the direct conv as built, and
    /// im2col + matrixmultiply for the GEMMs.
    Baseline,
    /// Only what every CPU runs: im2col + matrixmultiply for convolutions
    /// and dense layers.
    Portable,
}

impl Kernels {
    /// Every variant, for tests.
    pub const ALL: [Kernels; 4] = [Kernels::Fastest, Kernels::Avx2, Kernels::Baseline, Kernels::Portable];

    /// What the vector kernels are dispatched to.
    pub(crate) fn arch(self) -> pulp::Arch {
        match self {
            Kernels::Fastest => pulp::Arch::new(),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => pulp::x86::V3::try_new().map_or(pulp::Arch::Scalar, pulp::Arch::V3),
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx2 => pulp::Arch::new(),
            Kernels::Baseline | Kernels::Portable => pulp::Arch::Scalar,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variants the tests run are the ones they are named after.
    #[test]
    fn each_variant_runs_its_own_code() {
        assert!(!has_fma(Kernels::Baseline) && !has_avx512(Kernels::Baseline));
        assert!(matches!(Kernels::Portable.arch(), pulp::Arch::Scalar));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            assert!(matches!(Kernels::Avx2.arch(), pulp::Arch::V3(_)));
            assert!(has_fma(Kernels::Avx2) && !has_avx512(Kernels::Avx2));
            assert_eq!(lanes(Kernels::Avx2), 8);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(has_avx512(Kernels::Fastest) && lanes(Kernels::Fastest) == 16);
        }
    }
}
