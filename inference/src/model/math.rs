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

    /// [`swiglu`] with the vector part sixteen lanes at a time (the same operations per lane),
    /// the tail as in the reference.
    #[target_feature(enable = "avx512f,fma,avx2")]
    pub fn swiglu_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
        use core::arch::x86_64::{
            _mm512_add_ps, _mm512_div_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps,
            _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
        };
        let len = gate.len().min(up.len()).min(out.len());
        let vector_end = len / 16 * 16;
        let lanes = gate[..vector_end]
            .as_chunks::<16>()
            .0
            .iter()
            .zip(up[..vector_end].as_chunks::<16>().0)
            .zip(out[..vector_end].as_chunks_mut::<16>().0);
        for ((gate, up), out) in lanes {
            // SAFETY: each chunk holds sixteen f32 (64 bytes read or written); AVX-512F is
            // enabled for this function, which is only called after CPUID reported it.
            unsafe {
                let x = _mm512_loadu_ps(gate.as_ptr());
                let e = super::wide16::expf_ggml16(_mm512_sub_ps(_mm512_setzero_ps(), x));
                let silu = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e));
                _mm512_storeu_ps(
                    out.as_mut_ptr(),
                    _mm512_mul_ps(silu, _mm512_loadu_ps(up.as_ptr())),
                );
            }
        }
        for i in vector_end..len {
            let x = gate[i];
            out[i] = x / (1.0 + libm::expf(-x)) * up[i];
        }
    }
}

/// Sixteen-lane AVX-512 forms of [`expf_ggml`], [`reduce16`] and [`softmax_exp_generic`]: each
/// lane does the scalar code's operations in the same order, so every bit is the same (as
/// llama.cpp's AVX-512 ggml_v_expf does the Arm routine's operations). Each function's contract
/// is that the CPU has AVX-512F; they are `#[inline(always)]` so they compile into the
/// `#[target_feature]` function that checked it.
#[cfg(target_arch = "x86_64")]
pub(super) mod wide16 {
    use super::f;
    use core::arch::x86_64::*;

    /// `-x` for every lane: the sign bit flipped, as Rust's scalar negation does (`0 - x`
    /// would give +0 for +0).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn negated(x: __m512) -> __m512 {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let sign = _mm512_set1_epi32(i32::MIN);
            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign))
        }
    }

    /// [`expf_ggml`](super::expf_ggml) of each lane, bit for bit.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    pub(in crate::model) unsafe fn expf_ggml16(x: __m512) -> __m512 {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let c = |bits: u32| _mm512_set1_ps(f(bits));
            let r = c(0x4b40_0000);
            let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
            let n = _mm512_sub_ps(z, r);
            let minus_n = negated(n);
            let b = _mm512_fmadd_ps(
                minus_n,
                c(0x35bf_be8e),
                _mm512_fmadd_ps(minus_n, c(0x3f31_7200), x),
            );
            let u = _mm512_mul_ps(b, b);
            let j = _mm512_fmadd_ps(
                _mm512_fmadd_ps(
                    _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                    u,
                    _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
                ),
                u,
                _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
            );
            // `j * 2^n` rounded once, as `scale_by_power_of_two` forms it for |n| <= 192.
            let scaled = _mm512_scalef_ps(j, n);
            // |n| > 192: 0 or infinity by the sign of n. Ordered compares are false for a NaN
            // n, which goes on to `scaled` as the scalar `>` lets it.
            let out_of_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), c(0x4340_0000));
            let not_positive = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
            let limit = _mm512_mask_blend_ps(not_positive, c(0x7f80_0000), _mm512_setzero_ps());
            _mm512_mask_blend_ps(out_of_range, scaled, limit)
        }
    }

    /// [`reduce16`](super::reduce16) of the lanes: the same additions, operands in the same
    /// order.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    pub(in crate::model) unsafe fn reduce16(v: __m512) -> f32 {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let t3 = _mm256_add_ps(high, _mm512_castps512_ps256(v));
            let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
            // Lanes 0 and 1: t6[0] + t6[2] and t6[1] + t6[3].
            let pairs = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
            _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
        }
    }

    /// [`softmax_exp_generic`](super::softmax_exp_generic) with sixteen exponentials per
    /// instruction: the chunk past `valid` loaded under a mask (its masked lanes are +0, as the
    /// reference's), the positions past the last whole 16 of `n` one by one with `expf` as
    /// there. `w` must hold `valid` scores and `out` the `n` positions.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    pub(in crate::model) unsafe fn softmax_exp(
        w: &[f32],
        valid: usize,
        n: usize,
        max: f32,
        out: &mut [f32],
    ) -> f64 {
        let (valid, n) = (valid.min(w.len()), n.min(out.len()));
        let mut sum = 0.0f64;
        let vector_end = n / 16 * 16;
        // SAFETY: AVX-512F by the contract.
        let max16 = unsafe { _mm512_set1_ps(max) };
        for (chunk, out) in out[..vector_end]
            .as_chunks_mut::<16>()
            .0
            .iter_mut()
            .enumerate()
        {
            let start = chunk * 16;
            if start >= valid {
                break;
            }
            let live = (valid - start).min(16);
            let mask = ((1u32 << live) - 1) as __mmask16;
            // SAFETY: `start < valid <= w.len()`, and the masked load touches only the `live`
            // scores from there (masked lanes are not read); `out` holds the 64 bytes stored.
            // AVX-512F by the contract.
            unsafe {
                let x = _mm512_maskz_loadu_ps(mask, w.as_ptr().add(start));
                let lanes = _mm512_maskz_mov_ps(mask, expf_ggml16(_mm512_sub_ps(x, max16)));
                _mm512_storeu_ps(out.as_mut_ptr(), lanes);
                sum += f64::from(reduce16(lanes));
            }
        }
        for i in vector_end..valid.min(n) {
            let value = libm::expf(w[i] - max);
            sum += f64::from(value);
            out[i] = value;
        }
        sum
    }
}

/// The element-wise operations at one SIMD level.
#[derive(Debug, Clone, Copy)]
pub struct Math {
    hardware_fma: bool,
    avx512: bool,
}

impl Math {
    pub fn new(level: SimdLevel) -> Self {
        // Every non-scalar level implies FMA (checked against CPUID when the level was chosen).
        Self {
            hardware_fma: level != SimdLevel::Scalar,
            avx512: level == SimdLevel::Avx512,
        }
    }

    pub fn swiglu(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: AVX-512F (and FMA, AVX2) were detected before this level was selected.
            return unsafe { hard::swiglu_avx512(gate, up, out) };
        }
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
        // Gates past both ends of the exponential's range, zeros, tiny values and the range's
        // edges, at lengths that leave a scalar tail (and none, and nothing but the tail).
        let mut wide_gate = gate.clone();
        wide_gate.extend([
            -0.0,
            0.0,
            1e-40,
            -1e-40,
            89.0,
            -89.0,
            104.0,
            -104.0,
            150.0,
            -150.0,
            500.0,
            -500.0,
            f32::MAX,
            f32::MIN,
            88.7,
            -88.7,
        ]);
        wide_gate.extend((0..400).map(|i| (i as f32 - 200.0) * 0.61));
        let wide_up: std::vec::Vec<f32> = (0..wide_gate.len())
            .map(|i| (i % 37) as f32 * 0.3 - 5.0)
            .collect();
        let levels = [SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|level| level.is_supported());
        for level in levels {
            for len in [0, 7, 16, 1000, 1016, 1020, wide_gate.len()] {
                let (gate, up) = (&wide_gate[..len], &wide_up[..len]);
                let (mut want, mut got) = (std::vec![0.0; len], std::vec![f32::NAN; len]);
                soft.swiglu(gate, up, &mut want);
                Math::new(level).swiglu(gate, up, &mut got);
                for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(
                        w.to_bits(),
                        g.to_bits(),
                        "{level:?} swiglu length {len} at {i}: gate {:e}, {w:e} vs {g:e}",
                        gate[i]
                    );
                }
            }
        }
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

    /// Inputs for the exponential: a sweep over every 4093rd f32 bit pattern (both signs, all
    /// binades, infinities, NaNs), a dense grid over -110..95, a run of neighbouring values
    /// around each point where the result's form changes (underflow to subnormal and to zero,
    /// overflow, the |n| > 192 cut) and around each point where `n` steps (x = (k + 1/2) ln 2),
    /// and the special values.
    fn exp_inputs() -> std::vec::Vec<f32> {
        let mut x: std::vec::Vec<f32> = (0..=u32::MAX / 4093)
            .map(|i| f32::from_bits(i * 4093))
            .collect();
        x.extend((0..205 * 2048).map(|i| -110.0 + i as f32 / 2048.0));
        let mut around = |centre: f32| {
            let mut up = centre;
            let mut down = centre;
            for _ in 0..300 {
                x.extend([up, down]);
                up = up.next_up();
                down = down.next_down();
            }
        };
        for edge in [
            -103.972_08,
            -87.336_55,
            -88.722_84,
            88.376_26,
            88.722_84,
            133.084_26,
            -133.084_26,
            0.0,
        ] {
            around(edge);
        }
        for k in -193..=193 {
            around((k as f32 + 0.5) * core::f32::consts::LN_2);
        }
        x.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc1_2345),
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
        ]);
        x
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_lane_exp_equals_the_scalar_bit_for_bit() {
        use core::arch::x86_64::{_mm512_loadu_ps, _mm512_storeu_ps};
        if !SimdLevel::Avx512.is_supported() {
            return;
        }
        #[target_feature(enable = "avx512f")]
        fn exp16(x: &[f32; 16]) -> [f32; 16] {
            let mut out = [0.0; 16];
            // SAFETY: 64 bytes read and written through the arrays; AVX-512F is enabled here and
            // was detected by the caller.
            unsafe {
                _mm512_storeu_ps(
                    out.as_mut_ptr(),
                    wide16::expf_ggml16(_mm512_loadu_ps(x.as_ptr())),
                );
            }
            out
        }
        let inputs = exp_inputs();
        let (mut subnormal, mut zero, mut infinite, mut nan) = (0, 0, 0, 0);
        for chunk in inputs.as_chunks::<16>().0 {
            // SAFETY: AVX-512F was detected above.
            let got = unsafe { exp16(chunk) };
            for (&x, got) in chunk.iter().zip(got) {
                let want = expf_ggml::<SoftFma>(x);
                // Rust leaves the sign and payload of a NaN result unspecified: a NaN only has
                // to stay a NaN.
                assert!(
                    want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                    "exp({x:e}): {want:e} vs {got:e}"
                );
                subnormal += usize::from(want.is_subnormal());
                zero += usize::from(want == 0.0);
                infinite += usize::from(want.is_infinite());
                nan += usize::from(want.is_nan());
            }
        }
        // The sweep reached every kind of result.
        assert!(subnormal > 10_000 && zero > 1000 && infinite > 1000 && nan > 1000);
    }

    /// `vscalefps` is [`scale_by_power_of_two`] for every `n` the exponential passes it: normal,
    /// subnormal (with ties at every bit position where they round), zero and overflowing
    /// results.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn scalef_rounds_like_the_scalar_power_of_two_scaling() {
        use core::arch::x86_64::{_mm512_set1_ps, _mm512_storeu_ps};
        if !SimdLevel::Avx512.is_supported() {
            return;
        }
        #[target_feature(enable = "avx512f")]
        fn scalef(j: f32, n: f32) -> f32 {
            let mut out = [0.0; 16];
            // SAFETY: 64 bytes written through the array; AVX-512F is enabled here and was
            // detected by the caller.
            unsafe {
                let scaled = _mm512_scalef_ps(_mm512_set1_ps(j), _mm512_set1_ps(n));
                _mm512_storeu_ps(out.as_mut_ptr(), scaled);
            }
            out[0]
        }
        use core::arch::x86_64::_mm512_scalef_ps;
        let one = 1.0f32.to_bits();
        let mut mantissas: std::vec::Vec<u32> = (0..1 << 23).step_by(4999).collect();
        for shift in 1..23 {
            let half = 1u32 << (shift - 1);
            let kept = (0x55_5555 >> shift) << shift;
            // Exactly halfway (kept part even and odd), and one unit either side.
            for m in [
                kept | half,
                (kept | 1 << shift) | half,
                kept | half | 1,
                kept | (half - 1),
            ] {
                mantissas.push(m & 0x7f_ffff);
            }
        }
        let (mut subnormal, mut zero, mut infinite) = (0, 0, 0);
        for &m in &mantissas {
            for exponent in [-1, 0] {
                let magnitude = f32::from_bits((one & !0x7f_ffff) | m) * 2f32.powi(exponent);
                for j in [magnitude, -magnitude] {
                    for n in -192..=192 {
                        let n = n as f32;
                        let want = scale_by_power_of_two(j, n);
                        // SAFETY: AVX-512F was detected above.
                        let got = unsafe { scalef(j, n) };
                        assert_eq!(want.to_bits(), got.to_bits(), "{j:e} * 2^{n}");
                        subnormal += usize::from(want.is_subnormal());
                        zero += usize::from(want == 0.0);
                        infinite += usize::from(want.is_infinite());
                    }
                }
            }
        }
        assert!(subnormal > 10_000 && zero > 1000 && infinite > 1000);
    }

    /// The AVX-512 softmax exponentials and sum equal the reference's bits for every split of a
    /// row: `valid` below 16, past a multiple of 16, at one, `n` past `valid`, a tail past the
    /// last whole 16, and scores that underflow, overflow or are NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_lane_softmax_exp_equals_the_reference() {
        if !SimdLevel::Avx512.is_supported() {
            return;
        }
        #[target_feature(enable = "avx512f")]
        fn wide(w: &[f32], valid: usize, n: usize, max: f32, out: &mut [f32]) -> f64 {
            // SAFETY: AVX-512F is enabled here and was detected by the caller.
            unsafe { wide16::softmax_exp(w, valid, n, max, out) }
        }
        // Scores of similar size, so every lane's rounding shows in the sum, and a few
        // outliers.
        let mut w: std::vec::Vec<f32> = (0..100)
            .map(|i| ((i * 37) % 101) as f32 * 0.0731 - 3.5)
            .collect();
        w[60] = 95.0;
        w[70] = -1e30;
        w[71] = -0.0;
        w[75] = f32::NAN;
        for max in [3.9, 0.0, -0.0, -1.0, 20.0, 200.0] {
            for valid in [1usize, 5, 15, 16, 17, 31, 32, 33, 47, 64, 71, 72, 76, 100] {
                for n in [
                    valid,
                    valid.next_multiple_of(16),
                    valid.next_multiple_of(32),
                    100,
                ] {
                    let n = n.max(valid).min(100);
                    let mut want = std::vec![0.0f32; 100];
                    let mut got = std::vec![f32::NAN; 100];
                    let a = softmax_exp_generic::<SoftFma>(&w, valid, n, max, &mut want);
                    // SAFETY: AVX-512F was detected above.
                    let b = unsafe { wide(&w, valid, n, max, &mut got) };
                    let at = format!("valid {valid} n {n} max {max}");
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{at}: sum {a} vs {b}"
                    );
                    for i in 0..valid.min(n) {
                        let (a, b) = (want[i], got[i]);
                        // A NaN's sign and payload are unspecified in Rust.
                        assert!(
                            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                            "{at}: position {i}: {a:e} vs {b:e}"
                        );
                    }
                }
            }
        }
    }
}
