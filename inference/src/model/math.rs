//! Element-wise operations of the forward pass, reproducing llama.cpp's CPU arithmetic: its
//! vectorised `expf` (ggml_v_expf, an Arm optimized-routines polynomial) for softmax and SiLU,
//! RoPE with the products contracted into FMAs as C compilers do, RMS norm with a double sum.
//!
//! Where FMAs are needed they come from [`Fma`]: the scalar level uses `libm::fmaf`, the SIMD
//! levels the FMA instruction; both round once, so every level gives the same bits.

use crate::cpu::SimdLevel;
use libm::fmaf;

/// The scalar operations whose fast form needs an instruction-set extension: a fused
/// multiply-add rounding once, and conversions to f16 (round to nearest even) and back. All are
/// exact operations, so every implementation gives the same bits.
pub trait Fma {
    fn fma(a: f32, b: f32, c: f32) -> f32;
    fn round_f16(x: f32) -> f32;
    /// The f16 nearest to `x` (ties to even), as its bits.
    fn f16_bits(x: f32) -> u16;
    /// The f32 equal to the f16 with these bits (always exact).
    fn f16_value(bits: u16) -> f32;
}

/// Software FMA and f16 conversion (portable).
pub struct SoftFma;

impl Fma for SoftFma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        fmaf(a, b, c)
    }

    #[inline(always)]
    fn round_f16(x: f32) -> f32 {
        crate::quant::f16_bits_to_f32(crate::quant::f32_to_f16_bits(x))
    }

    #[inline(always)]
    fn f16_bits(x: f32) -> u16 {
        crate::quant::f32_to_f16_bits(x)
    }

    #[inline(always)]
    fn f16_value(bits: u16) -> f32 {
        crate::quant::f16_bits_to_f32(bits)
    }
}

/// The FMA instruction. Only used inside functions compiled with the `fma` target feature.
#[cfg(target_arch = "x86_64")]
pub struct HardFma;

#[cfg(target_arch = "x86_64")]
impl Fma for HardFma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_fmadd_ss, _mm_set_ss};
        // SAFETY: `HardFma` is only instantiated in `#[target_feature(enable = "fma")]`
        // functions, which are only called after CPUID reported FMA.
        unsafe { _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c))) }
    }

    #[inline(always)]
    fn round_f16(x: f32) -> f32 {
        use core::arch::x86_64::{_mm_cvtph_ps, _mm_cvtps_ph, _mm_cvtss_f32, _mm_set_ss};
        // SAFETY: as for `fma`: only in functions compiled with F16C, which every SIMD level
        // has. Rounding mode 0 is round to nearest even, as in the software conversion.
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<0>(_mm_set_ss(x)))) }
    }

    #[inline(always)]
    fn f16_bits(x: f32) -> u16 {
        use core::arch::x86_64::{_mm_cvtps_ph, _mm_cvtsi128_si32, _mm_set_ss};
        // SAFETY: as in `round_f16` (F16C, rounding mode 0: nearest even).
        unsafe { _mm_cvtsi128_si32(_mm_cvtps_ph::<0>(_mm_set_ss(x))) as u16 }
    }

    #[inline(always)]
    fn f16_value(bits: u16) -> f32 {
        use core::arch::x86_64::{_mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtss_f32};
        // SAFETY: as in `round_f16` (F16C).
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) }
    }
}

const fn f(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// ggml_v_expf, one lane: max error ~1.5 ulp; above 88.38 gives infinity, below -103.97 zero.
#[inline(always)]
pub fn expf_ggml<F: Fma>(x: f32) -> f32 {
    let r = f(0x4b40_0000); // 1.5 * 2^23: rounds to an integer
    let z = F::fma(x, f(0x3fb8_aa3b), r); // x / ln 2 + r
    let n = z - r;
    // x - n * ln 2, with ln 2 split in two parts.
    let b = F::fma(-n, f(0x35bf_be8e), F::fma(-n, f(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = F::fma(
        F::fma(
            F::fma(f(0x3c07_2010), b, f(0x3d2b_9f17)),
            u,
            F::fma(f(0x3e2a_af33), b, f(0x3eff_fedb)),
        ),
        u,
        F::fma(f(0x3f7f_fff6), b, 1.0),
    );
    scale_by_power_of_two(j, n)
}

/// `j * 2^n` for integral `n` in [-192, 192], rounded once (as `vscalefps` does): the first
/// product is exact, only the second rounds.
#[inline(always)]
fn scale_by_power_of_two(j: f32, n: f32) -> f32 {
    let n = n as i32;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if (-126..=127).contains(&n) {
        j * pow2(n)
    } else if n < 0 {
        (j * pow2(n + 100)) * pow2(-100)
    } else {
        (j * pow2(n - 100)) * pow2(100)
    }
}

/// `x / (1 + e^-x)` as ggml_v_silu computes it.
#[inline(always)]
fn silu_ggml<F: Fma>(x: f32) -> f32 {
    x / (1.0 + expf_ggml::<F>(0.0 - x))
}

/// Sum of sixteen lanes in the order of `_mm512_reduce_add_ps` (halves, then quarters, ...).
pub fn reduce16(v: &[f32; 16]) -> f32 {
    let t3: [f32; 8] = core::array::from_fn(|i| v[i + 8] + v[i]);
    let t6: [f32; 4] = core::array::from_fn(|i| t3[i + 4] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// `out = silu(gate) * up`, sixteen at a time with the vector exp and the rest with `expf`, as
/// ggml_vec_swiglu_f32 does.
#[inline(always)]
fn swiglu_generic<F: Fma>(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let vector_end = gate.len() / 16 * 16;
    for i in 0..vector_end {
        out[i] = silu_ggml::<F>(gate[i]) * up[i];
    }
    for i in vector_end..gate.len() {
        let x = gate[i];
        out[i] = x / (1.0 + libm::expf(-x)) * up[i];
    }
}

#[inline(always)]
fn f16_bits_slice_generic<F: Fma>(source: &[f32], out: &mut [u16]) {
    for (o, &x) in out.iter_mut().zip(source) {
        *o = F::f16_bits(x);
    }
}

/// Rotates adjacent pairs `(v[2i], v[2i+1])` by the angles whose cos/sin are `cos_sin[i]`
/// (llama.cpp's "normal" RoPE mode), with the products contracted as C compilers emit them.
#[inline(always)]
fn rope_generic<F: Fma>(v: &mut [f32], cos_sin: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in v.chunks_exact_mut(2).zip(cos_sin) {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = F::fma(x0, cos, -(x1 * sin));
        pair[1] = F::fma(x0, sin, x1 * cos);
    }
}

/// Exponentials of a softmax row: `out[i] = exp(w[i] - max)` for `i < valid` and 0 after (the
/// masked positions), over `n` positions; returns the sum as ggml_vec_soft_max_f32 forms it
/// (f32 sums of sixteen, accumulated in f64, the tail one by one).
#[inline(always)]
pub(super) fn softmax_exp_generic<F: Fma>(
    w: &[f32],
    valid: usize,
    n: usize,
    max: f32,
    out: &mut [f32],
) -> f64 {
    let mut sum = 0.0f64;
    let vector_end = n / 16 * 16;
    let mut start = 0;
    while start < vector_end && start < valid {
        let mut lanes = [0.0f32; 16];
        for (k, lane) in lanes.iter_mut().enumerate() {
            let i = start + k;
            *lane = if i < valid {
                expf_ggml::<F>(w[i] - max)
            } else {
                0.0
            };
            out[i] = *lane;
        }
        sum += f64::from(reduce16(&lanes));
        start += 16;
    }
    for i in vector_end..valid.min(n) {
        let value = libm::expf(w[i] - max);
        sum += f64::from(value);
        out[i] = value;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod hard {
    use super::HardFma;

    /// Eight values per `vcvtps2ph` (rounding mode 0: nearest even), the rest one by one.
    #[target_feature(enable = "fma,avx2,f16c")]
    pub fn f16_bits_slice(source: &[f32], out: &mut [u16]) {
        use core::arch::x86_64::{__m128i, _mm_storeu_si128, _mm256_cvtps_ph, _mm256_loadu_ps};
        let len = source.len().min(out.len());
        let whole = len / 8 * 8;
        for (from, to) in source[..whole]
            .chunks_exact(8)
            .zip(out[..whole].chunks_exact_mut(8))
        {
            // SAFETY: both chunks hold eight elements: 32 bytes read, 16 written.
            unsafe {
                let bits = _mm256_cvtps_ph::<0>(_mm256_loadu_ps(from.as_ptr()));
                _mm_storeu_si128(to.as_mut_ptr().cast::<__m128i>(), bits);
            }
        }
        super::f16_bits_slice_generic::<HardFma>(&source[whole..len], &mut out[whole..len])
    }

    #[target_feature(enable = "fma,avx2")]
    pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        super::swiglu_generic::<HardFma>(gate, up, out)
    }

    #[target_feature(enable = "fma,avx2")]
    pub fn rope(v: &mut [f32], cos_sin: &[(f32, f32)]) {
        super::rope_generic::<HardFma>(v, cos_sin)
    }
}

/// The element-wise operations at one SIMD level.
#[derive(Debug, Clone, Copy)]
pub struct Math {
    hardware_fma: bool,
}

impl Math {
    pub fn new(level: SimdLevel) -> Self {
        // Every non-scalar level implies FMA (checked against CPUID when the level was chosen).
        Self {
            hardware_fma: level != SimdLevel::Scalar,
        }
    }

    pub fn swiglu(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.hardware_fma {
            // SAFETY: FMA and AVX2 were detected before this level was selected.
            return unsafe { hard::swiglu(gate, up, out) };
        }
        swiglu_generic::<SoftFma>(gate, up, out)
    }

    /// `out[i]` = the bits of `source[i]` rounded to f16 (nearest even).
    pub fn f16_bits_slice(&self, source: &[f32], out: &mut [u16]) {
        #[cfg(target_arch = "x86_64")]
        if self.hardware_fma {
            // SAFETY: every SIMD level includes F16C and FMA (checked when it was selected).
            return unsafe { hard::f16_bits_slice(source, out) };
        }
        f16_bits_slice_generic::<SoftFma>(source, out)
    }

    pub fn rope(&self, v: &mut [f32], cos_sin: &[(f32, f32)]) {
        #[cfg(target_arch = "x86_64")]
        if self.hardware_fma {
            // SAFETY: as in `swiglu`.
            return unsafe { hard::rope(v, cos_sin) };
        }
        rope_generic::<SoftFma>(v, cos_sin)
    }
}

/// `out = x / sqrt(mean(x²) + eps) * weight`, with the sum of squares in f64 as ggml does.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mut sum = 0.0f64;
    for &v in x {
        sum += f64::from(v * v);
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = (v * scale) * w;
    }
}

/// RoPE angles for position `pos`: `theta_i = pos * base^(-2i/dims)` formed as ggml does (a
/// running product in f32), with glibc's `sinf`/`cosf` results.
pub fn rope_angles(pos: usize, freq_base: f32, head_dim: usize, out: &mut [(f32, f32)]) {
    // ggml: powf(freq_base, -2.0f / n_dims). The exponent is formed in f32 as there; the power is
    // evaluated in f64 and rounded, which equals glibc's powf for the bases and widths in use
    // (checked for bases 1e4..5e6 and widths 32..256).
    let exponent = -2.0f32 / head_dim as f32;
    let theta_scale = libm::pow(f64::from(freq_base), f64::from(exponent)) as f32;
    let mut theta = pos as f32;
    for slot in out.iter_mut().take(head_dim / 2) {
        let (sin, cos) = super::trig::sincosf(theta);
        *slot = (cos, sin);
        theta *= theta_scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_exp_is_close_to_exp_and_handles_limits() {
        let mut x = -104.0f32;
        while x < 89.0 {
            let got = expf_ggml::<SoftFma>(x);
            let want = libm::exp(f64::from(x));
            if want > 1e-37 && want < 3e38 {
                assert!(
                    ((f64::from(got) - want) / want).abs() < 4e-7,
                    "{x}: {got} vs {want}"
                );
            }
            x += 0.037;
        }
        assert_eq!(expf_ggml::<SoftFma>(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml::<SoftFma>(200.0), f32::INFINITY);
        assert_eq!(expf_ggml::<SoftFma>(0.0), 1.0);
    }

    /// Ties between neighbouring f16 values go to the even one, at every level (the KV cache
    /// stores these bits, so a truncating or ties-away conversion would change the output).
    #[test]
    fn f16_bits_round_to_nearest_even_at_every_level() {
        use crate::quant::f16_bits_to_f32;
        let mut source = std::vec::Vec::new();
        let mut ties = std::vec::Vec::new();
        for bits in (0..0x7bffu16).step_by(37) {
            let (low, high) = (f16_bits_to_f32(bits), f16_bits_to_f32(bits + 1));
            // Exact in f32: one bit more than an f16 significand.
            let middle = (low + high) / 2.0;
            let even = if bits % 2 == 0 { bits } else { bits + 1 };
            ties.push((source.len(), bits, even));
            source.extend([middle, -middle, middle.next_down(), middle.next_up(), low]);
        }
        source.extend([
            65519.0,
            65520.0,
            1e-9,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let levels = [SimdLevel::Scalar, SimdLevel::Avx2]
            .into_iter()
            .filter(|level| level.is_supported());
        for level in levels {
            let mut bits = std::vec![0u16; source.len()];
            Math::new(level).f16_bits_slice(&source, &mut bits);
            for (&x, &b) in source.iter().zip(&bits) {
                assert_eq!(b, crate::quant::f32_to_f16_bits(x), "{level:?} {x:e}");
            }
            for &(at, low, even) in &ties {
                assert_eq!(bits[at], even, "{level:?} tie {:e}", source[at]);
                assert_eq!(
                    bits[at + 1],
                    even | 0x8000,
                    "{level:?} tie {:e}",
                    source[at + 1]
                );
                assert_eq!(bits[at + 2], low, "{level:?} below a tie");
                assert_eq!(bits[at + 3], low + 1, "{level:?} above a tie");
                assert_eq!(bits[at + 4], low, "{level:?} an f16 value");
            }
        }
    }

    #[test]
    fn hardware_and_software_fma_agree() {
        if !SimdLevel::Avx2.is_supported() {
            return;
        }
        let soft = Math::new(SimdLevel::Scalar);
        let hard = Math::new(SimdLevel::Avx2);
        let gate: std::vec::Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.173).collect();
        let up: std::vec::Vec<f32> = (0..1000).map(|i| (i as f32) * 0.01 - 3.0).collect();
        let (mut a, mut b) = (std::vec![0.0; 1000], std::vec![0.0; 1000]);
        soft.swiglu(&gate, &up, &mut a);
        hard.swiglu(&gate, &up, &mut b);
        assert_eq!(a, b);
        let mut angles = std::vec![(0.0, 0.0); 32];
        rope_angles(77, 100_000.0, 64, &mut angles);
        let (mut ra, mut rb) = (gate[..64].to_vec(), gate[..64].to_vec());
        soft.rope(&mut ra, &angles);
        hard.rope(&mut rb, &angles);
        assert_eq!(ra, rb);
        #[target_feature(enable = "fma,avx2")]
        fn hard_softmax(w: &[f32], out: &mut [f32]) -> f64 {
            softmax_exp_generic::<HardFma>(w, 900, 1000, 90.0, out)
        }
        let sa = softmax_exp_generic::<SoftFma>(&gate, 900, 1000, 90.0, &mut a);
        // SAFETY: AVX2 (and with it FMA, by this crate's levels) was detected above.
        let sb = unsafe { hard_softmax(&gate, &mut b) };
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert_eq!(a[..900], b[..900]);
    }
}
