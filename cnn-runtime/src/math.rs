//! Vectorisable `exp`, `tanh` and `sigmoid` over slices.
//!
//! `f32::tanh` costs about 20 ns an element and does not vectorise. These
//! are branch-free so that the compiler vectorises the loops:
//! `exp` reduces `x = n ln2 + r` with `|r| <= ln2 / 2`, takes Cephes'
//! degree-6 polynomial for `e^r` (relative error about 1e-7) and builds `2^n`
//! from bits; `tanh` is a rational function. Over the whole f32 range
//! (tested): `tanh` and `sigmoid` are within 1e-6 absolute of the exact
//! values, NaN stays NaN.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it rounds a float of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x` for finite `x`, clamped to the range where `e^x` is a normal float.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_55, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let mut y = 1.987_569_1e-4;
    y = y * r + 1.398_2e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 0.5;
    let e_r = y * z + r + 1.0;
    // 2^n from bits: n + 127 + 2^23 has n + 127 in its low mantissa bits.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0xff;
    e_r * f32::from_bits(biased << 23)
}

/// A rational function of degree 13 over 6 on `[-7.9, 7.9]`, beyond which
/// tanh rounds to ±1 (Eigen's `generic_fast_tanh_float`): a division and
/// no `exp`, twice as fast as through [`exp`].
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let clamped = x.clamp(-7.905_311, 7.905_311);
    let x2 = clamped * clamped;
    let mut p = -2.760_768_5e-16;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    // Near 0 this is x within 2e-7 relative (tested), -0 for -0: no
    // select of x there, which LLVM made into a masked store (`vmaskmovps`,
    // slow on AMD, and loads after it wait for it).
    clamped * (p / q)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    // NaN stays NaN through `exp` (tested): no select, as in `tanh`.
    1.0 / (1.0 + exp(-x))
}

// `for` loops, not `for_each`: a closure this long is not inlined into
// `for_each`, and out of line it runs without the caller's vector
// instructions (`#[target_feature]` does not reach a call).
#[inline(always)]
pub fn tanh_slice(values: &mut [f32]) {
    for v in values {
        *v = tanh(*v);
    }
}

#[inline(always)]
pub fn sigmoid_slice(values: &mut [f32]) {
    for v in values {
        *v = sigmoid(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 97th bit pattern of f32, and the edges.
    fn sample() -> impl Iterator<Item = f32> {
        (0..=u32::MAX).step_by(97).map(f32::from_bits).chain([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.0,
            -88.0,
            9.0,
            -9.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ])
    }

    #[test]
    fn tanh_and_sigmoid_are_within_1e6_over_all_f32() {
        let (mut worst_tanh, mut worst_sigmoid) = (0.0f64, 0.0f64);
        for x in sample() {
            if x.is_nan() {
                assert!(tanh(x).is_nan() && sigmoid(x).is_nan());
                continue;
            }
            let exact_tanh = (x as f64).tanh();
            let exact_sigmoid = 1.0 / (1.0 + (-(x as f64)).exp());
            worst_tanh = worst_tanh.max((tanh(x) as f64 - exact_tanh).abs());
            worst_sigmoid = worst_sigmoid.max((sigmoid(x) as f64 - exact_sigmoid).abs());
        }
        assert!(worst_tanh < 1e-6, "tanh: {worst_tanh:e}");
        // Near 0, tanh x is x to within 2e-7, and keeps its sign.
        for x in sample().filter(|x| x.abs() < 4e-4) {
            // Subnormals have fewer bits: one step of theirs is allowed too.
            let bound = 2e-7 * x.abs() as f64 + f32::from_bits(1) as f64;
            assert!((tanh(x) as f64 - x as f64).abs() <= bound, "tanh({x:e}) = {:e}", tanh(x));
            assert_eq!(tanh(x).is_sign_negative(), x.is_sign_negative(), "tanh({x:e})");
        }
        assert!(worst_sigmoid < 1e-6, "sigmoid: {worst_sigmoid:e}");
    }

    #[test]
    fn exp_is_within_2e7_relative_where_it_is_normal() {
        let mut worst = 0.0f64;
        for x in sample().filter(|x| (-87.0..88.0).contains(x)) {
            let exact = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - exact) / exact).abs());
        }
        assert!(worst < 2e-7, "{worst:e}");
    }
}
