//! 8-bit quantization of activations, bit-for-bit as llama.cpp's x86 `quantize_row_q8_0` /
//! `quantize_row_q8_1` do it (so that dot products round the same way): per block of 32, the
//! scale is `max|x| / 127` stored as f16, quants are `x * (127 / max|x|)` rounded half to even,
//! and Q8_1's sum term is `f16(d * Σq)` with the unrounded `d`.

use super::blocks::{BLOCK, f16_bits_to_f32, f32_to_f16_bits};

/// One quantized block of activations, with what every kernel needs precomputed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct ActivationBlock {
    pub qs: [i8; BLOCK],
    /// Scale, already rounded through f16.
    pub d: f32,
    /// Q8_1's `d * Σq`, rounded through f16 (used against Q4_1's minimum).
    pub s: f32,
    /// Sum of each group of four consecutive quants (used to undo weight offsets).
    pub sum4: [i16; 8],
}

/// Round half to even for |x| < 2^22 (quants are within ±128): adding and removing 1.5 * 2^23
/// leaves the integer the FPU's default rounding picked.
fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// Quantizes `x` (a multiple of 32 long) into `out` (one block per 32 values).
pub fn quantize_row_q8(x: &[f32], out: &mut [ActivationBlock]) {
    quantize_generic(x, out)
}

/// [`quantize_row_q8`] compiled for AVX2 (same arithmetic, so the same bits, in wider registers).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn quantize_row_q8_avx2(x: &[f32], out: &mut [ActivationBlock]) {
    quantize_generic(x, out)
}

/// [`quantize_row_q8`] written for AVX-512: the same operations per value (maximum of the
/// magnitudes, `x * (127 / max)` rounded half to even, saturated to i8 with NaN as 0, group and
/// block sums, the scale and sum rounded through f16), so the same bits.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn quantize_row_q8_avx512(x: &[f32], out: &mut [ActivationBlock]) {
    use core::arch::x86_64::*;
    let ones = _mm256_set1_epi8(1);
    let (low, high) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
    for (values, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        // SAFETY: `values` holds 32 f32.
        let (first, second) = unsafe {
            (
                _mm512_loadu_ps(values.as_ptr()),
                _mm512_loadu_ps(values.as_ptr().add(16)),
            )
        };
        // `max_ps` returns its second operand when either is NaN: NaN magnitudes are skipped,
        // as `f32::max` skips them.
        let magnitudes = _mm512_max_ps(
            _mm512_abs_ps(second),
            _mm512_max_ps(_mm512_abs_ps(first), _mm512_setzero_ps()),
        );
        let max = _mm512_reduce_max_ps(magnitudes);
        let d = max / 127.0;
        let inverse = _mm512_set1_ps(if max != 0.0 { 127.0 / max } else { 0.0 });
        let quantize = |v: __m512| {
            let scaled = _mm512_mul_ps(v, inverse);
            let rounded =
                _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(scaled);
            let clamped = _mm512_min_ps(_mm512_max_ps(rounded, low), high);
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(scaled, scaled);
            _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_maskz_mov_ps(ordered, clamped)))
        };
        let quants = _mm256_set_m128i(quantize(second), quantize(first));
        // Sums of each four consecutive quants: `1 * q` four at a time.
        let groups = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, quants);
        // SAFETY: `qs` is 32 bytes and `sum4` 8 i16.
        unsafe {
            _mm256_storeu_si256(block.qs.as_mut_ptr().cast(), quants);
            _mm_storeu_si128(
                block.sum4.as_mut_ptr().cast(),
                _mm256_cvtepi32_epi16(groups),
            );
        }
        let sum = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(groups));
        block.d = f16_bits_to_f32(f32_to_f16_bits(d));
        block.s = f16_bits_to_f32(f32_to_f16_bits(d * sum as f32));
    }
}

#[inline(always)]
fn quantize_generic(x: &[f32], out: &mut [ActivationBlock]) {
    for (values, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        // Eight running maxima, then their maximum: the result does not depend on the order
        // (`max` ignores NaN and every operand is non-negative), and this form vectorizes.
        let mut lanes = [0.0f32; 8];
        for chunk in values.chunks_exact(8) {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane = lane.max(v.abs());
            }
        }
        let max = lanes.iter().fold(0.0f32, |m, &l| m.max(l));
        let d = max / 127.0;
        let inverse = if max != 0.0 { 127.0 / max } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(values) {
            let scaled = v * inverse;
            // The SIMD conversion saturates (packs); `as` saturates the same way for finite
            // values and maps NaN to 0 where the SIMD code gives -128: NaN inputs are garbage in.
            let rounded = if scaled.abs() < 4_194_304.0 {
                round_half_even(scaled)
            } else {
                scaled
            };
            *q = rounded as i8;
            sum += i32::from(*q);
        }
        for (group, quads) in block.sum4.iter_mut().zip(block.qs.chunks_exact(4)) {
            *group = quads.iter().map(|&q| i16::from(q)).sum();
        }
        block.d = f16_bits_to_f32(f32_to_f16_bits(d));
        block.s = f16_bits_to_f32(f32_to_f16_bits(d * sum as f32));
    }
}
