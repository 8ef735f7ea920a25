//! Quantized activations laid out once per product for the AVX-512 kernels, so that their inner
//! loop takes every activation operand straight from memory (no shuffles per weight block).
//!
//! Vectors are taken in groups of [`MINIMUM_GROUP`] (a kernel pass handles at most that many),
//! and within a group the blocks are stored block-major: block `b` of the group's vectors `0..8`
//! side by side, so a pass reaches every vector's operands at fixed offsets from one pointer.
//!
//! A packed pair block in a 512-bit register holds two rows (see `packed`), so an activation
//! block must be spread over the lanes the same way:
//! - [`SpreadBlock::q4`]: quants `[a0..16, a0..16, a16..32, a16..32]`, the lanes of both rows'
//!   low nibbles then both rows' high nibbles (4-bit types); [`SpreadBlock::q8`] the quants twice
//!   (Q8_0, whose rows take 32 lanes each).
//! - The starting values of each block's integer sums: [`FLOAT_BIAS`] plus the offset
//!   corrections, already spread. Q4_0 quants are stored 0..15 for `q - 8`, so `-8 Σa` per group
//!   of four; Q8_0 weights are flipped to unsigned `q + 128`, so `-128 Σa` per group.
//! - [`BlockTerms`]: per block, the scales `d` of the group's vectors, and Q4_1's `s` of each
//!   twice (once per row of a pair), so one FMA per pair block updates the minimum term of both
//!   rows for all of them.

use crate::quant::ActivationBlock;

/// Added to every integer group sum so that its bits read as the f32 `FLOAT_BIAS_VALUE + sum`
/// (exact for |sum| < 2^22; group sums are below 2^18): subtracting the float then gives the sum
/// as f32 without an integer conversion, which competes with `vpdpbusd` for one port.
pub const FLOAT_BIAS: i32 = 0x4b40_0000;
/// The f32 whose bits are [`FLOAT_BIAS`]: 1.5 * 2^23.
pub const FLOAT_BIAS_VALUE: f32 = 12_582_912.0;

/// Vectors stored together (see the module documentation).
pub const MINIMUM_GROUP: usize = 8;

/// One activation block spread for the pair-block lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct SpreadBlock {
    pub q4: [i8; 64],
    pub q8: [i8; 64],
    pub q4_0_offsets: [i32; 16],
    pub q8_0_offsets: [i32; 16],
}

impl Default for SpreadBlock {
    fn default() -> Self {
        Self {
            q4: [0; 64],
            q8: [0; 64],
            q4_0_offsets: [0; 16],
            q8_0_offsets: [0; 16],
        }
    }
}

/// One block's per-vector scalars for a group: lane `2 c + h` of `s` holds `s` of vector `c`
/// (for row `h` of a pair), `d[c]` its scale.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct BlockTerms {
    pub s: [f32; 16],
    pub d: [f32; MINIMUM_GROUP],
    /// `-FLOAT_BIAS_VALUE * d[c]` (exact: both factors have few significant bits), which lets a
    /// 4-bit kernel turn a biased sum into `sum * d` with one FMA.
    pub bias_d: [f32; MINIMUM_GROUP],
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
        spread.q8[..32].copy_from_slice(&block.qs);
        spread.q8[32..].copy_from_slice(&block.qs);
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

/// [`SpreadBlock::from_block`] with AVX-512 (the same values).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn spread_one_avx512(block: &ActivationBlock, out: &mut SpreadBlock) {
    use core::arch::x86_64::*;
    let quants_q4 = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    let quants_q8 = _mm512_setr_epi64(0, 1, 2, 3, 0, 1, 2, 3);
    let sums_q4 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
    let sums_q8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    let bias = _mm512_set1_epi32(FLOAT_BIAS);
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
        _mm512_storeu_si512(
            out.q8.as_mut_ptr().cast(),
            _mm512_permutexvar_epi64(quants_q8, quants),
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

/// [`spread_blocks`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn spread_blocks_avx512(
    blocks: &[ActivationBlock],
    n: usize,
    per_vector: usize,
    spread: &mut [SpreadBlock],
    terms: &mut [BlockTerms],
) {
    fill(blocks, n, per_vector, spread, terms, |block, out| {
        spread_one_avx512(block, out)
    });
}

/// Fills `spread` and `terms` from `blocks`, `n` vectors of `per_vector` blocks each one after
/// another: block `b` of vector `t` goes to `spread[(t / 8 * per_vector + b) * 8 + t % 8]`, its
/// scalars to `terms[t / 8 * per_vector + b]` (see the module documentation). `avx512` says
/// whether this CPU has AVX-512 (the results are the same either way).
pub fn spread_blocks(
    avx512: bool,
    blocks: &[ActivationBlock],
    n: usize,
    per_vector: usize,
    spread: &mut [SpreadBlock],
    terms: &mut [BlockTerms],
) {
    let groups = n.div_ceil(MINIMUM_GROUP);
    if n == 0
        || per_vector == 0
        || blocks.len() < n * per_vector
        || spread.len() < groups * per_vector * MINIMUM_GROUP
        || terms.len() < groups * per_vector
    {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: the caller checked the CPU.
        unsafe { spread_blocks_avx512(blocks, n, per_vector, spread, terms) };
        return;
    }
    fill(blocks, n, per_vector, spread, terms, |block, out| {
        *out = SpreadBlock::from_block(block);
    });
}

/// The body of [`spread_blocks`] once the sizes are checked, with `one` spreading a block.
#[inline(always)]
fn fill(
    blocks: &[ActivationBlock],
    n: usize,
    per_vector: usize,
    spread: &mut [SpreadBlock],
    terms: &mut [BlockTerms],
    one: impl Fn(&ActivationBlock, &mut SpreadBlock),
) {
    let groups = n.div_ceil(MINIMUM_GROUP);
    for t in 0..n {
        let (group, c) = (t / MINIMUM_GROUP, t % MINIMUM_GROUP);
        let vector = &blocks[t * per_vector..(t + 1) * per_vector];
        for (b, block) in vector.iter().enumerate() {
            one(
                block,
                &mut spread[(group * per_vector + b) * MINIMUM_GROUP + c],
            );
            let terms = &mut terms[group * per_vector + b];
            terms.s[2 * c] = block.s;
            terms.s[2 * c + 1] = block.s;
            terms.d[c] = block.d;
            terms.bias_d[c] = -FLOAT_BIAS_VALUE * block.d;
        }
    }
    // A group's missing vectors keep zero terms (their lanes are never read).
    let filled = n - (groups - 1) * MINIMUM_GROUP;
    for terms in &mut terms[(groups - 1) * per_vector..groups * per_vector] {
        for c in filled..MINIMUM_GROUP {
            terms.s[2 * c] = 0.0;
            terms.s[2 * c + 1] = 0.0;
            terms.d[c] = 0.0;
            terms.bias_d[c] = 0.0;
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
        let mut spread = [SpreadBlock::default(); 8];
        let mut terms = [BlockTerms::default(); 1];
        let avx512 = crate::cpu::SimdLevel::Avx512.is_supported();
        spread_blocks(avx512, &blocks, 7, 1, &mut spread, &mut terms);
        for (block, spread) in blocks.iter().zip(&spread) {
            assert_eq!(*spread, SpreadBlock::from_block(block));
            assert_eq!(spread.q8[..32], block.qs);
        }
        for (c, pair) in terms[0].s.chunks_exact(2).enumerate() {
            let (s, d) = blocks.get(c).map_or((0.0, 0.0), |b| (b.s, b.d));
            assert_eq!(pair, [s, s]);
            assert_eq!(terms[0].d[c], d);
            assert_eq!(terms[0].bias_d[c], -FLOAT_BIAS_VALUE * d);
        }
    }
}
