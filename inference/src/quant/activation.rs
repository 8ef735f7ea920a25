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
