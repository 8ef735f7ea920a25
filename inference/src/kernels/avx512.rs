//! AVX-512 (F, BW, VL, VNNI) kernels. One 512-bit register holds the same block of both rows of
//! a packed pair, so a single `vpdpbusd` computes the sixteen 4-quant group sums of two rows;
//! each row's groups stay in their own lanes and accumulate in the scalar reference's order, so
//! results are bit-identical to it. Several pairs and activation vectors are handled per pass so
//! each weight block is loaded once for all of them.
//!
//! Lane layouts per pair and block:
//! - 4-bit types: lanes 0-3 row 0 groups 0-3, lanes 4-7 row 1 groups 0-3, lanes 8-11 row 0
//!   groups 4-7, lanes 12-15 row 1 groups 4-7.
//! - Q8_0: lanes 0-7 row 0 groups 0-7, lanes 8-15 row 1 groups 0-7.

use super::activations::Activations;
use super::packed::PackedMatrix;
use super::scalar::hsum8;
use super::{Q4_0, Q4_1, Q8_0, avx2, quant_kind};
use crate::quant::ActivationBlock;
use core::arch::x86_64::*;
use core::ops::Range;

/// Pairs of rows per pass for one activation vector (decode).
const PAIRS_SINGLE: usize = 4;
/// Pairs of rows and activation vectors per pass for batches (prompt processing).
const PAIRS_BATCH: usize = 2;
const COLUMNS_BATCH: usize = 4;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C. `rows` must lie within `w`,
/// `x.cols() == w.cols()`,
/// `origin <= rows.start`, and `out` must hold `(x.n() - 1) * out_stride + rows.end - origin`
/// values (row `r` of activation `t` goes to `out[t * out_stride + r - origin]`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn matmul(
    w: &PackedMatrix,
    x: &Activations,
    rows: Range<usize>,
    out: &mut [f32],
    out_stride: usize,
    origin: usize,
) {
    let Some(kind) = quant_kind(w.tensor_type()) else {
        // SAFETY: AVX-512 implies the AVX2 requirements; the other conditions are the same.
        unsafe { avx2::matmul(w, x, rows, out, out_stride, origin) };
        return;
    };
    let first_pair = rows.start / 2;
    let end_pair = rows.end.div_ceil(2);
    let mut t = 0;
    while t < x.n() {
        let columns = if x.n() - t >= COLUMNS_BATCH {
            COLUMNS_BATCH
        } else {
            1
        };
        let mut pair = first_pair;
        while pair < end_pair {
            let pairs = if columns == 1 {
                PAIRS_SINGLE
            } else {
                PAIRS_BATCH
            };
            let pairs = if end_pair - pair >= pairs { pairs } else { 1 };
            let mut results = [[[0.0f32; 2]; COLUMNS_BATCH]; PAIRS_SINGLE];
            // SAFETY: features as required by the caller; `tile` checks every slice it reads.
            unsafe {
                match kind {
                    Q4_0 => run_tile::<Q4_0>(w, x, t, pair, pairs, columns, &mut results),
                    Q4_1 => run_tile::<Q4_1>(w, x, t, pair, pairs, columns, &mut results),
                    _ => run_tile::<Q8_0>(w, x, t, pair, pairs, columns, &mut results),
                }
            }
            for (p, pair_results) in results.iter().enumerate().take(pairs) {
                for (c, column) in pair_results.iter().enumerate().take(columns) {
                    for (half, &value) in column.iter().enumerate() {
                        let r = (pair + p) * 2 + half;
                        if rows.contains(&r) {
                            out[(t + c) * out_stride + r - origin] = value;
                        }
                    }
                }
            }
            pair += pairs;
        }
        t += columns;
    }
}

/// The tile shape for `pairs` x `columns`.
///
/// # Safety
/// As for [`tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run_tile<const KIND: u8>(
    w: &PackedMatrix,
    x: &Activations,
    t: usize,
    pair: usize,
    pairs: usize,
    columns: usize,
    results: &mut [[[f32; 2]; COLUMNS_BATCH]; PAIRS_SINGLE],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (pairs, columns) {
            (PAIRS_SINGLE, 1) => tile::<KIND, PAIRS_SINGLE, 1>(w, pair, [x.blocks(t)], results),
            (PAIRS_BATCH, COLUMNS_BATCH) => tile::<KIND, PAIRS_BATCH, COLUMNS_BATCH>(
                w,
                pair,
                [
                    x.blocks(t),
                    x.blocks(t + 1),
                    x.blocks(t + 2),
                    x.blocks(t + 3),
                ],
                results,
            ),
            (_, 1) => tile::<KIND, 1, 1>(w, pair, [x.blocks(t)], results),
            _ => tile::<KIND, 1, COLUMNS_BATCH>(
                w,
                pair,
                [
                    x.blocks(t),
                    x.blocks(t + 1),
                    x.blocks(t + 2),
                    x.blocks(t + 3),
                ],
                results,
            ),
        }
    }
}

/// Rows of `P` pairs starting at `first_pair` against `C` activation vectors.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C available; `kind` is `w`'s type. Out-of-range
/// pairs or short activations make it return without writing `results`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<const KIND: u8, const P: usize, const C: usize>(
    w: &PackedMatrix,
    first_pair: usize,
    acts: [&[ActivationBlock]; C],
    results: &mut [[[f32; 2]; COLUMNS_BATCH]; PAIRS_SINGLE],
) {
    let kind = KIND;
    let block_stride = w.block_stride();
    let group_block = w.group_block_stride();
    let blocks = w.blocks_per_row();
    let data = w.quant_data();
    let bases: [usize; P] = core::array::from_fn(|p| w.block_offset(first_pair + p, 0));
    for base in bases {
        if blocks == 0 || base + (blocks - 1) * group_block + block_stride > data.len() {
            return;
        }
    }
    for act in acts {
        if act.len() != blocks {
            return;
        }
    }
    let low_mask = _mm512_set1_epi8(0x0f);
    let flip = _mm512_set1_epi8(-128);
    // Activation quants [a0..16, a0..16, a16..32, a16..32] for the 4-bit layouts.
    let spread_q4 = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    // Group sums [s0..3, s0..3, s4..7, s4..7] (4-bit) and scales per row (see module docs).
    let spread_sums_q4 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
    let spread_sums_q8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    let spread_scale_q4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    let spread_scale_q8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let spread_scale = if kind == Q8_0 {
        spread_scale_q8
    } else {
        spread_scale_q4
    };

    let mut lanes = [[_mm512_setzero_ps(); C]; P];
    let mut mins = [[_mm_setzero_ps(); C]; P];
    #[allow(clippy::needless_range_loop)] // `b` indexes the weights and every column
    for b in 0..blocks {
        // Per activation vector: quants laid out for this type, the offset correction, the
        // scale and (Q4_1) the sum term.
        let mut act_quants = [_mm512_setzero_si512(); C];
        let mut act_offsets = [_mm512_setzero_si512(); C];
        let mut act_d = [_mm512_setzero_ps(); C];
        let mut act_s = [_mm_setzero_ps(); C];
        for c in 0..C {
            let a = &acts[c][b];
            // SAFETY: `qs` is 32 bytes and `sum4` 16 bytes.
            let (quants, sums) = unsafe {
                (
                    _mm256_loadu_si256(a.qs.as_ptr().cast()),
                    _mm256_cvtepi16_epi32(_mm_loadu_si128(a.sum4.as_ptr().cast())),
                )
            };
            let sums = _mm512_castsi256_si512(sums);
            match kind {
                Q8_0 => {
                    act_quants[c] = _mm512_broadcast_i64x4(quants);
                    // Weights are flipped to unsigned (q + 128): remove 128 * Σa per group.
                    let spread = _mm512_permutexvar_epi32(spread_sums_q8, sums);
                    act_offsets[c] =
                        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(spread, 7));
                }
                _ => {
                    act_quants[c] =
                        _mm512_permutexvar_epi64(spread_q4, _mm512_castsi256_si512(quants));
                    if kind == Q4_0 {
                        // Quants are stored 0..15 for values q - 8: remove 8 * Σa per group.
                        let spread = _mm512_permutexvar_epi32(spread_sums_q4, sums);
                        act_offsets[c] =
                            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(spread, 3));
                    }
                }
            }
            act_d[c] = _mm512_set1_ps(a.d);
            act_s[c] = _mm_set1_ps(a.s);
        }
        // The tile's next blocks are prefetched: a few hundred bytes ahead in its stream.
        let ahead = data
            .as_ptr()
            .wrapping_add(bases[0] + (b + 12) * group_block);
        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128).cast());
        for p in 0..P {
            // SAFETY: checked above: block `b` of pair `first_pair + p` lies inside `data`.
            let ptr = unsafe { data.as_ptr().add(bases[p] + b * group_block) };
            // SAFETY: `ptr` starts one packed block of a pair (36, 40 or 68 bytes): scales first,
            // then both rows' quants, so each load below reads inside it.
            let (scales, weights) = unsafe {
                match kind {
                    Q8_0 => (
                        _mm_cvtph_ps(_mm_cvtsi32_si128(ptr.cast::<i32>().read_unaligned())),
                        _mm512_xor_si512(_mm512_loadu_si512(ptr.add(4).cast()), flip),
                    ),
                    _ => {
                        let (scales, offset) = if kind == Q4_1 {
                            (_mm_cvtph_ps(_mm_loadl_epi64(ptr.cast())), 8)
                        } else {
                            (
                                _mm_cvtph_ps(_mm_cvtsi32_si128(ptr.cast::<i32>().read_unaligned())),
                                4,
                            )
                        };
                        let packed = _mm256_loadu_si256(ptr.add(offset).cast());
                        let both = _mm512_inserti64x4(
                            _mm512_castsi256_si512(packed),
                            _mm256_srli_epi16(packed, 4),
                            1,
                        );
                        (scales, _mm512_and_si512(both, low_mask))
                    }
                }
            };
            // Each row's weight scale spread over that row's lanes, once for all columns.
            let weight_scales = _mm512_permutexvar_ps(spread_scale, _mm512_castps128_ps512(scales));
            for c in 0..C {
                let sums = _mm512_dpbusd_epi32(act_offsets[c], weights, act_quants[c]);
                // d_weight * d_activation per lane: the same products as llama.cpp's `d0 * d1`.
                let d = _mm512_mul_ps(weight_scales, act_d[c]);
                lanes[p][c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sums), lanes[p][c]);
                if kind == Q4_1 {
                    mins[p][c] = _mm_fmadd_ps(scales, act_s[c], mins[p][c]);
                }
            }
        }
    }
    for p in 0..P {
        for c in 0..C {
            let mut l = [0.0f32; 16];
            let mut m = [0.0f32; 4];
            // SAFETY: sixteen and four f32 fit `l` and `m`.
            unsafe {
                _mm512_storeu_ps(l.as_mut_ptr(), lanes[p][c]);
                _mm_storeu_ps(m.as_mut_ptr(), mins[p][c]);
            }
            for half in 0..2 {
                let row_lanes: [f32; 8] = if kind == Q8_0 {
                    core::array::from_fn(|g| l[8 * half + g])
                } else {
                    core::array::from_fn(|g| l[(g / 4) * 8 + half * 4 + g % 4])
                };
                let min = if kind == Q4_1 { m[2 + half] } else { 0.0 };
                results[p][c][half] = hsum8(&row_lanes) + min;
            }
        }
    }
}
