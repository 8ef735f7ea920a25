//! AVX2 + FMA + F16C kernels. Per row they perform exactly the operations of the scalar
//! reference (llama.cpp's AVX2 `ggml_vec_dot_*` order), with two rows of a packed pair and up to
//! two activation vectors per pass so each weight block is loaded once for all of them.

use super::activations::Activations;
use super::packed::PackedMatrix;
use super::scalar::{dot_f32, hsum8};
use super::{Q4_0, Q4_1, Q8_0, quant_kind};
use crate::quant::{ActivationBlock, BLOCK};
use core::arch::x86_64::*;
use core::ops::Range;

/// Columns (activation vectors) handled per pass over the weights.
const COLUMNS: usize = 2;

/// # Safety
/// The CPU must support AVX2, FMA and F16C. `rows` must lie within `w`, `x.cols() == w.cols()`,
/// `origin <= rows.start`, and `out` must hold `(x.n() - 1) * out_stride + rows.end - origin`
/// values (row `r` of activation `t` goes to `out[t * out_stride + r - origin]`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn matmul(
    w: &PackedMatrix,
    x: &Activations,
    rows: Range<usize>,
    out: &mut [f32],
    out_stride: usize,
    origin: usize,
) {
    let Some(kind) = quant_kind(w.tensor_type()) else {
        // Float matrices are small in the models served; the reference order is used as is.
        for t in 0..x.n() {
            for r in rows.clone() {
                let row = &w.float_data()[r * w.cols()..(r + 1) * w.cols()];
                out[t * out_stride + r - origin] = dot_f32(row, x.floats(t));
            }
        }
        return;
    };
    let mut t = 0;
    while t < x.n() {
        let columns = COLUMNS.min(x.n() - t);
        for pair in rows.start / 2..rows.end.div_ceil(2) {
            let mut results = [[0.0f32; COLUMNS]; 2];
            // SAFETY: the caller guarantees AVX2/FMA/F16C; slices are sized by the packing.
            unsafe {
                if columns == COLUMNS {
                    let acts = [x.blocks(t), x.blocks(t + 1)];
                    pair_tile::<COLUMNS>(kind, w, pair, acts, &mut results);
                } else {
                    pair_tile::<1>(kind, w, pair, [x.blocks(t)], &mut results);
                }
            }
            for (half, row_results) in results.iter().enumerate() {
                let r = pair * 2 + half;
                if rows.contains(&r) {
                    for (c, &value) in row_results.iter().enumerate().take(columns) {
                        out[(t + c) * out_stride + r - origin] = value;
                    }
                }
            }
        }
        t += columns;
    }
}

/// Both rows of one packed pair against `C` activation vectors.
///
/// # Safety
/// AVX2/FMA/F16C available; `pair < w.pair_count()`; every `acts[c]` has one block per block
/// of `w`'s rows; `kind` is `w`'s type.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pair_tile<const C: usize>(
    kind: u8,
    w: &PackedMatrix,
    pair: usize,
    acts: [&[ActivationBlock]; C],
    results: &mut [[f32; COLUMNS]; 2],
) {
    let blocks = w.blocks_per_row();
    let ones = _mm256_set1_epi16(1);
    let low_mask = _mm256_set1_epi8(0x0f);
    let mut lanes = [[_mm256_setzero_ps(); C]; 2];
    let mut mins = [_mm_setzero_ps(); C];
    #[allow(clippy::needless_range_loop)] // `b` indexes the weights and every column
    for b in 0..blocks {
        let block = w.pair_block(pair, b);
        let p = block.as_ptr();
        // SAFETY: `block` is one pair block (36, 40 or 68 bytes): the scale slots come first and
        // the quants of both rows fill the rest, so every load below stays inside it.
        let (scales, quants) = unsafe {
            let scales = if kind == Q4_1 {
                _mm_cvtph_ps(_mm_loadl_epi64(p.cast()))
            } else {
                _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()))
            };
            let quants = match kind {
                Q8_0 => [
                    _mm256_loadu_si256(p.add(4).cast()),
                    _mm256_loadu_si256(p.add(36).cast()),
                ],
                _ => {
                    let offset = if kind == Q4_1 { 8 } else { 4 };
                    let row0 = _mm_loadu_si128(p.add(offset).cast());
                    let row1 = _mm_loadu_si128(p.add(offset + 16).cast());
                    [nibbles(row0, low_mask), nibbles(row1, low_mask)]
                }
            };
            (scales, quants)
        };
        for c in 0..C {
            let a = &acts[c][b];
            // SAFETY: `qs` is 32 bytes.
            let aq = unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) };
            let scale = _mm_mul_ps(scales, _mm_set1_ps(a.d));
            let offsets = if kind == Q4_0 {
                // SAFETY: `sum4` is eight i16 (16 bytes).
                let sums = unsafe { _mm_loadu_si128(a.sum4.as_ptr().cast()) };
                _mm256_slli_epi32(_mm256_cvtepi16_epi32(sums), 3)
            } else {
                _mm256_setzero_si256()
            };
            for half in 0..2 {
                let products = if kind == Q8_0 {
                    let magnitude = _mm256_sign_epi8(quants[half], quants[half]);
                    let signed = _mm256_sign_epi8(aq, quants[half]);
                    _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed), ones)
                } else {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(quants[half], aq), ones)
                };
                let sums = _mm256_cvtepi32_ps(_mm256_sub_epi32(products, offsets));
                let d = if half == 0 {
                    _mm256_broadcastss_ps(scale)
                } else {
                    _mm256_broadcastss_ps(_mm_movehdup_ps(scale))
                };
                lanes[half][c] = _mm256_fmadd_ps(d, sums, lanes[half][c]);
            }
            if kind == Q4_1 {
                mins[c] = _mm_fmadd_ps(scales, _mm_set1_ps(a.s), mins[c]);
            }
        }
    }
    for c in 0..C {
        let mut min_lanes = [0.0f32; 4];
        // SAFETY: four f32 fit `min_lanes`.
        unsafe { _mm_storeu_ps(min_lanes.as_mut_ptr(), mins[c]) };
        for half in 0..2 {
            let mut l = [0.0f32; 8];
            // SAFETY: eight f32 fit `l`.
            unsafe { _mm256_storeu_ps(l.as_mut_ptr(), lanes[half][c]) };
            results[half][c] = hsum8(&l)
                + if kind == Q4_1 {
                    min_lanes[2 + half]
                } else {
                    0.0
                };
        }
    }
}

/// 16 packed bytes to 32 quants in element order (low nibbles, then high nibbles).
#[target_feature(enable = "avx2")]
fn nibbles(packed: __m128i, low_mask: __m256i) -> __m256i {
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, low_mask)
}

const _: () = assert!(BLOCK == 32);
