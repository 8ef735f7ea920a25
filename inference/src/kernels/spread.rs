//! Quantized activations laid out once per product for the AVX-512 kernels, so that their inner
//! loop takes every activation operand straight from memory (no shuffles per weight block).
//!
//! A packed pair block in a 512-bit register holds two rows (see `packed`), so an activation
//! block must be spread over the lanes the same way:
//! - [`SpreadBlock::q4`]: quants `[a0..16, a0..16, a16..32, a16..32]`, the lanes of both rows'
//!   low nibbles then both rows' high nibbles (4-bit types). Q8_0 uses the plain quants twice,
//!   which a broadcast load gives.
//! - The starting values of each block's integer sums: [`FLOAT_BIAS`] plus the offset
//!   corrections, already spread. Q4_0 quants are stored 0..15 for `q - 8`, so `-8 Σa` per group
//!   of four; Q8_0 weights are flipped to unsigned `q + 128`, so `-128 Σa` per group.
//! - [`MinimumTerms`]: Q4_1's `s` of eight consecutive vectors, each twice (once per row of a
//!   pair), so one FMA per pair block updates the minimum term of both rows for all of them.

use crate::quant::ActivationBlock;

/// Added to every integer group sum so that its bits read as the f32 `FLOAT_BIAS_VALUE + sum`
/// (exact for |sum| < 2^22; group sums are below 2^18): subtracting the float then gives the sum
/// as f32 without an integer conversion, which competes with `vpdpbusd` for one port.
pub const FLOAT_BIAS: i32 = 0x4b40_0000;
/// The f32 whose bits are [`FLOAT_BIAS`]: 1.5 * 2^23.
pub const FLOAT_BIAS_VALUE: f32 = 12_582_912.0;

/// Vectors whose `s` terms share one [`MinimumTerms`].
pub const MINIMUM_GROUP: usize = 8;

/// One activation block spread for the pair-block lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct SpreadBlock {
    pub q4: [i8; 64],
    pub q4_0_offsets: [i32; 16],
    pub q8_0_offsets: [i32; 16],
}

impl Default for SpreadBlock {
    fn default() -> Self {
        Self {
            q4: [0; 64],
            q4_0_offsets: [0; 16],
            q8_0_offsets: [0; 16],
        }
    }
}

/// Lane `2 c + h` holds `s` of vector `c` of the group (for row `h` of a pair).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct MinimumTerms {
    pub s: [f32; 16],
}

impl SpreadBlock {
    /// The spread form of `block`.
    pub fn from_block(block: &ActivationBlock) -> Self {
        let mut spread = Self::default();
        for (lane, quads) in spread.q4.chunks_exact_mut(16).enumerate() {
            // Lanes 0-15 and 16-31 take quants 0..16, lanes 32-63 quants 16..32.
            let half = lane / 2;
            quads.copy_from_slice(&block.qs[16 * half..16 * half + 16]);
        }
        for lane in 0..16 {
            // 4-bit lanes: groups 0-3 (row 0), 0-3 (row 1), 4-7 (row 0), 4-7 (row 1).
            let q4_group = (lane / 8) * 4 + lane % 4;
            spread.q4_0_offsets[lane] = FLOAT_BIAS - 8 * i32::from(block.sum4[q4_group]);
            // Q8_0 lanes: groups 0-7 (row 0), 0-7 (row 1).
            spread.q8_0_offsets[lane] = FLOAT_BIAS - 128 * i32::from(block.sum4[lane % 8]);
        }
        spread
    }
}

/// [`SpreadBlock::from_block`] for every block, with AVX-512 (the same values).
///
/// # Safety
/// The CPU must support AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn spread_each_avx512(blocks: &[ActivationBlock], spread: &mut [SpreadBlock]) {
    use core::arch::x86_64::*;
    let quants_q4 = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    let sums_q4 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
    let sums_q8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    let bias = _mm512_set1_epi32(FLOAT_BIAS);
    for (out, block) in spread.iter_mut().zip(blocks) {
        // SAFETY: `qs` is 32 bytes, `sum4` 16 bytes, and every field of `out` 64 bytes.
        unsafe {
            let quants = _mm512_castsi256_si512(_mm256_loadu_si256(block.qs.as_ptr().cast()));
            let sums = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(_mm_loadu_si128(
                block.sum4.as_ptr().cast(),
            )));
            _mm512_storeu_si512(
                out.q4.as_mut_ptr().cast(),
                _mm512_permutexvar_epi64(quants_q4, quants),
            );
            let q4 = _mm512_slli_epi32::<3>(_mm512_permutexvar_epi32(sums_q4, sums));
            _mm512_storeu_si512(
                out.q4_0_offsets.as_mut_ptr().cast(),
                _mm512_sub_epi32(bias, q4),
            );
            let q8 = _mm512_slli_epi32::<7>(_mm512_permutexvar_epi32(sums_q8, sums));
            _mm512_storeu_si512(
                out.q8_0_offsets.as_mut_ptr().cast(),
                _mm512_sub_epi32(bias, q8),
            );
        }
    }
}

/// Fills `spread` (one per block of `blocks`) and `minimums` (one per group of
/// [`MINIMUM_GROUP`] vectors and block) for `n` vectors of `per_vector` blocks each; `avx512`
/// says whether this CPU has AVX-512 (the results are the same either way).
pub fn spread_blocks(
    avx512: bool,
    blocks: &[ActivationBlock],
    n: usize,
    per_vector: usize,
    spread: &mut [SpreadBlock],
    minimums: &mut [MinimumTerms],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: the caller checked the CPU.
        unsafe { spread_each_avx512(blocks, spread) };
    } else {
        for (out, block) in spread.iter_mut().zip(blocks) {
            *out = SpreadBlock::from_block(block);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (out, block) in spread.iter_mut().zip(blocks) {
        *out = SpreadBlock::from_block(block);
    }
    for group in 0..n.div_ceil(MINIMUM_GROUP) {
        for b in 0..per_vector {
            let Some(terms) = minimums.get_mut(group * per_vector + b) else {
                return;
            };
            for c in 0..MINIMUM_GROUP {
                let t = group * MINIMUM_GROUP + c;
                let s = if t < n {
                    blocks.get(t * per_vector + b).map_or(0.0, |block| block.s)
                } else {
                    0.0
                };
                terms.s[2 * c] = s;
                terms.s[2 * c + 1] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row_q8;

    #[test]
    fn vector_spread_equals_the_portable_one() {
        let x: alloc::vec::Vec<f32> = (0..32 * 7)
            .map(|i| ((i * 7919) % 263) as f32 - 131.0)
            .collect();
        let mut blocks = [ActivationBlock::default(); 7];
        quantize_row_q8(&x, &mut blocks);
        let mut spread = [SpreadBlock::default(); 7];
        let mut minimums = [MinimumTerms::default(); 1];
        let avx512 = crate::cpu::SimdLevel::Avx512.is_supported();
        spread_blocks(avx512, &blocks, 7, 1, &mut spread, &mut minimums);
        for (block, spread) in blocks.iter().zip(&spread) {
            assert_eq!(*spread, SpreadBlock::from_block(block));
        }
        for (c, pair) in minimums[0].s.chunks_exact(2).enumerate() {
            let s = blocks.get(c).map_or(0.0, |b| b.s);
            assert_eq!(pair, [s, s]);
        }
    }
}
