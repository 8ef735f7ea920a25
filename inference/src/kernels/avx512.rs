//! AVX-512 (F, BW, VL, VNNI) kernels. One 512-bit register holds the same block of both rows of
//! a packed pair, so a single `vpdpbusd` computes the sixteen 4-quant group sums of two rows;
//! each row's groups stay in their own lanes and accumulate in the scalar reference's order, so
//! results are bit-identical to it.
//!
//! A pass covers a few pairs and up to [`COLUMNS`] activation vectors: each pair block is loaded
//! and unpacked once for all of them, and the activation operands come straight from memory in
//! the layout `spread` prepared (quants already in the lanes, offset corrections already
//! spread), so the inner loop is three vector operations per pair block and vector for the
//! 4-bit types (the integer sums; one FMA that converts them and applies the activation's
//! scale; the FMA into the lanes) and four for Q8_0 (sums, conversion, scale product, FMA).
//!
//! Why the 4-bit shortcut is exact (`exact_activation_scaling`): llama.cpp adds
//! `fma(d0 * d1, sum, lane)`. Both scales are f16 values (11 significant bits), so `d0 * d1` is
//! exact in f32, and a 4-bit group sum is below 2^13 in magnitude (4 x 15 x 128), so
//! `sum * d1` is exact too (at most 24 bits); `fma(d0, sum * d1, lane)` therefore rounds the
//! same real number once. Q8_0 sums reach 2^16 and keep the scale product. The passes walk the rows outermost, so a
//! batch wider than one pass re-reads a few kilobytes of weights from L1, not the matrix from
//! memory.
//!
//! Lane layouts per pair and block:
//! - 4-bit types: lanes 0-3 row 0 groups 0-3, lanes 4-7 row 1 groups 0-3, lanes 8-11 row 0
//!   groups 4-7, lanes 12-15 row 1 groups 4-7.
//! - Q8_0: lanes 0-7 row 0 groups 0-7, lanes 8-15 row 1 groups 0-7.

use super::activations::Activations;
use super::packed::{PAIRS_PER_GROUP, PackedMatrix};
use super::spread::{BlockTerms, FLOAT_BIAS, FLOAT_BIAS_VALUE, MINIMUM_GROUP, SpreadBlock};
use super::{Q4_0, Q4_1, Q8_0, avx2, quant_kind};
use core::arch::x86_64::*;
use core::ops::Range;

/// Pairs of rows per pass for one activation vector (decode).
const PAIRS_SINGLE: usize = 4;
/// Pairs of rows per pass for batches.
const PAIRS_BATCH: usize = 2;
/// Most activation vectors per pass; a pass never crosses a group of minimum terms.
const COLUMNS: usize = MINIMUM_GROUP;

/// How many blocks ahead of the current one a pass prefetches (a group block is at most
/// 272 bytes, three cache lines cover the 160 bytes of a 4-bit one).
const PREFETCH_BLOCKS: usize = 12;

/// The bytes a pass asks the memory for ahead of its loads, paced so that the passes over one
/// group of pairs draw the group's bytes evenly.
///
/// A group block holds [`PAIRS_PER_GROUP`] pairs, and a batch pass reads only its `P` of them,
/// so a group is read in several passes. Prefetching each pass's own blocks made the first
/// pass fetch the whole group at twice the pace and the others nothing: bursts at twice the
/// average bandwidth, which the products (and the other core) then waited on. Here pass `k`
/// prefetches as if it read the `k`-th share of the group's bytes in order, far enough ahead
/// (a whole pass plus a margin) that the first pass's loads, which run ahead of that pace,
/// still find their lines fetched, and the last pass fetches the next group's first share.
/// Measured on a 110 MB stream of 1536 x 576 Q4_1 products with 8 vectors: 72 -> 80 GMAC/s
/// per core; the Q8_0 output head 65 -> 75.
#[derive(Clone, Copy)]
struct PrefetchPace {
    /// Offset (in the matrix's data) of this pass's share of its group.
    start: usize,
    /// Bytes of the group's stream per block of this pass.
    per_block: usize,
    /// How many blocks' worth of that stream the prefetch runs ahead.
    ahead: usize,
}

impl PrefetchPace {
    /// The pace of a pass of `pairs` pairs from `first_pair` over `w`.
    fn new(w: &PackedMatrix, first_pair: usize, pairs: usize) -> Self {
        let passes = (PAIRS_PER_GROUP / pairs.max(1)).max(1);
        let per_block = w.group_block_stride() / passes;
        let in_group = first_pair % PAIRS_PER_GROUP;
        let pass = in_group / pairs.max(1);
        let ahead = if passes > 1 {
            w.blocks_per_row() + 2 * PREFETCH_BLOCKS
        } else {
            PREFETCH_BLOCKS
        };
        Self {
            start: w.block_offset(first_pair - in_group, 0) + pass * w.blocks_per_row() * per_block,
            per_block,
            ahead,
        }
    }

    /// Prefetches what the first pass of a call reads before its own prefetches reach it
    /// (they run `ahead` blocks of the stream in front of it): without this, every row block a
    /// task starts on waits on memory for its first blocks, which made splitting products
    /// finer than two blocks per worker cost more than it evened out.
    fn warm_up(&self, data: &[u8]) {
        let end = (self.start + self.ahead * self.per_block).min(data.len());
        let first = self.start.min(end);
        for line in (first..end).step_by(64) {
            // SAFETY: `line < data.len()`; a prefetch reads nothing architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(line).cast()) };
        }
    }

    /// The address to prefetch while reading block `b` (it may lie past the matrix: a
    /// prefetch never faults, and only the address is computed).
    fn address(&self, data: &[u8], b: usize) -> *const u8 {
        data.as_ptr()
            .wrapping_add(self.start + (b + self.ahead) * self.per_block)
    }
}

/// Results of one pass: `[pair][column][row of the pair]`.
type TileResults = [[[f32; 2]; COLUMNS]; PAIRS_SINGLE];

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
    let Some(kind) = quant_kind(w.tensor_type()).filter(|_| x.is_spread()) else {
        // Float weights, or activations made without the spread form: the AVX2 kernels give
        // the same bits. SAFETY: AVX-512 implies the AVX2 requirements; the rest is the same.
        unsafe { avx2::matmul(w, x, rows, out, out_stride, origin) };
        return;
    };
    let first_pair = rows.start / 2;
    let end_pair = rows.end.div_ceil(2);
    let wanted = if x.n() == 1 {
        PAIRS_SINGLE
    } else {
        PAIRS_BATCH
    };
    PrefetchPace::new(w, first_pair, wanted.min(end_pair - first_pair)).warm_up(w.quant_data());
    let mut pair = first_pair;
    while pair < end_pair {
        let pairs = if end_pair - pair >= wanted { wanted } else { 1 };
        let mut t = 0;
        while t < x.n() {
            // 8, then 4, 2, 1: a pass starting at a multiple of its width never crosses a group.
            let columns = match x.n() - t {
                left if left >= 8 => 8,
                left if left >= 4 => 4,
                left if left >= 2 => 2,
                _ => 1,
            };
            let mut results = [[[0.0f32; 2]; COLUMNS]; PAIRS_SINGLE];
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
            t += columns;
        }
        pair += pairs;
    }
}

/// The tile shape for `pairs` x `columns` (`columns` a power of two up to [`COLUMNS`], the
/// pass starting at a multiple of it).
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
    results: &mut TileResults,
) {
    let group = Group {
        spread: x.spread_group(t / MINIMUM_GROUP),
        terms: x.terms(t / MINIMUM_GROUP),
        first: t % MINIMUM_GROUP,
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        match (pairs, columns) {
            (PAIRS_SINGLE, _) => tile::<KIND, PAIRS_SINGLE, 1>(w, pair, group, results),
            (PAIRS_BATCH, 8) => tile::<KIND, PAIRS_BATCH, 8>(w, pair, group, results),
            (PAIRS_BATCH, 4) => tile::<KIND, PAIRS_BATCH, 4>(w, pair, group, results),
            (PAIRS_BATCH, 2) => tile::<KIND, PAIRS_BATCH, 2>(w, pair, group, results),
            (PAIRS_BATCH, _) => tile::<KIND, PAIRS_BATCH, 1>(w, pair, group, results),
            (_, 8) => tile::<KIND, 1, 8>(w, pair, group, results),
            (_, 4) => tile::<KIND, 1, 4>(w, pair, group, results),
            (_, 2) => tile::<KIND, 1, 2>(w, pair, group, results),
            _ => tile::<KIND, 1, 1>(w, pair, group, results),
        }
    }
}

/// The activation vectors of a pass: vectors `first..` of one group of the spread form.
#[derive(Clone, Copy)]
struct Group<'a> {
    spread: &'a [SpreadBlock],
    terms: &'a [BlockTerms],
    first: usize,
}

/// Rows of `P` pairs starting at `first_pair` against `C` activation vectors of `group`.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C available; `KIND` is `w`'s type. Out-of-range
/// pairs or short activations make it return without writing `results`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<const KIND: u8, const P: usize, const C: usize>(
    w: &PackedMatrix,
    first_pair: usize,
    group: Group<'_>,
    results: &mut TileResults,
) {
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
    let pace = PrefetchPace::new(w, first_pair, P);
    let lane0 = group.first;
    if lane0 + C > MINIMUM_GROUP
        || group.spread.len() != blocks * MINIMUM_GROUP
        || group.terms.len() != blocks
    {
        return;
    }
    let low_mask = _mm512_set1_epi8(0x0f);
    let flip = _mm512_set1_epi8(-128);
    // The upper half of a 4-bit pair block's register takes the high nibbles.
    let nibble_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    // Each row's scale over that row's lanes (see module docs); Q4_1's minimums of a pair over
    // lanes (row 0, row 1) repeated, as the minimum terms are laid out.
    let spread_scale = if KIND == Q8_0 {
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
    } else {
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
    };
    let spread_min = _mm512_setr_epi32(2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    let bias = _mm512_set1_ps(FLOAT_BIAS_VALUE);
    let start_q4_1 = _mm512_set1_epi32(FLOAT_BIAS);

    let mut lanes = [[_mm512_setzero_ps(); C]; P];
    let mut mins = [_mm512_setzero_ps(); P];
    // One vector: `[d0, d1, m0, m1] * s` keeps the minimum terms in lanes 2 and 3, no shuffle.
    let mut single_mins = [_mm_setzero_ps(); P];
    for b in 0..blocks {
        // The tile's next blocks are prefetched, a couple of kilobytes ahead in its stream: the
        // hardware prefetchers alone leave decode waiting on memory.
        let ahead = pace.address(data, b);
        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128).cast());
        // SAFETY: `b < blocks`, and the group holds `blocks * MINIMUM_GROUP` spread blocks and
        // `blocks` terms (checked above); `lane0 + C <= MINIMUM_GROUP`, so every vector `c < C`
        // read below is `spread_b.add(c)` within block `b`'s eight.
        let (spread_b, terms_b) = unsafe {
            (
                group.spread.as_ptr().add(b * MINIMUM_GROUP + lane0),
                &*group.terms.as_ptr().add(b),
            )
        };
        let mut weights = [_mm512_setzero_si512(); P];
        let mut weight_scales = [_mm512_setzero_ps(); P];
        for p in 0..P {
            // SAFETY: `bases[p] + b * group_block + block_stride <= data.len()` (checked above).
            let ptr = unsafe { data.as_ptr().add(bases[p] + b * group_block) };
            // SAFETY: `ptr` starts one packed block of a pair (36, 40 or 68 bytes): scales first,
            // then both rows' quants, so each load below reads inside it.
            let scales = unsafe {
                match KIND {
                    Q4_1 => {
                        let scales = _mm_cvtph_ps(_mm_loadl_epi64(ptr.cast()));
                        let packed = _mm512_broadcast_i64x4(_mm256_loadu_si256(ptr.add(8).cast()));
                        weights[p] =
                            _mm512_and_si512(_mm512_srlv_epi64(packed, nibble_shift), low_mask);
                        scales
                    }
                    Q4_0 => {
                        let packed = _mm512_broadcast_i64x4(_mm256_loadu_si256(ptr.add(4).cast()));
                        weights[p] =
                            _mm512_and_si512(_mm512_srlv_epi64(packed, nibble_shift), low_mask);
                        _mm_cvtph_ps(_mm_cvtsi32_si128(ptr.cast::<i32>().read_unaligned()))
                    }
                    _ => {
                        weights[p] = _mm512_xor_si512(_mm512_loadu_si512(ptr.add(4).cast()), flip);
                        _mm_cvtph_ps(_mm_cvtsi32_si128(ptr.cast::<i32>().read_unaligned()))
                    }
                }
            };
            if KIND == Q4_1 && C == 1 {
                let s = _mm_set1_ps(terms_b.s[2 * lane0]);
                single_mins[p] = _mm_fmadd_ps(scales, s, single_mins[p]);
            }
            let scales = _mm512_castps128_ps512(scales);
            weight_scales[p] = _mm512_permutexvar_ps(spread_scale, scales);
            if KIND == Q4_1 && C > 1 {
                // SAFETY: sixteen floats.
                let s = unsafe { _mm512_loadu_ps(terms_b.s.as_ptr()) };
                let m = _mm512_permutexvar_ps(spread_min, scales);
                mins[p] = _mm512_fmadd_ps(m, s, mins[p]);
            }
        }
        #[allow(clippy::needless_range_loop)] // `c` indexes the group and every pair's lanes
        for c in 0..C {
            // SAFETY: `spread_b.add(c)` is inside the group (see above); its fields are 64 bytes.
            let (quants, start) = unsafe {
                let s = &*spread_b.add(c);
                match KIND {
                    Q4_1 => (_mm512_loadu_si512(s.q4.as_ptr().cast()), start_q4_1),
                    Q4_0 => (
                        _mm512_loadu_si512(s.q4.as_ptr().cast()),
                        _mm512_loadu_si512(s.q4_0_offsets.as_ptr().cast()),
                    ),
                    _ => (
                        _mm512_loadu_si512(s.q8.as_ptr().cast()),
                        _mm512_loadu_si512(s.q8_0_offsets.as_ptr().cast()),
                    ),
                }
            };
            let act_d = _mm512_set1_ps(terms_b.d[lane0 + c]);
            let bias_d = _mm512_set1_ps(terms_b.bias_d[lane0 + c]);
            for p in 0..P {
                let sums = _mm512_dpbusd_epi32(start, weights[p], quants);
                if KIND == Q8_0 {
                    // d_weight * d_activation per lane: the same products as llama.cpp's
                    // `d0 * d1`.
                    let d = _mm512_mul_ps(weight_scales[p], act_d);
                    // The sums as f32, exactly (see `spread::FLOAT_BIAS`).
                    let sums = _mm512_sub_ps(_mm512_castsi512_ps(sums), bias);
                    lanes[p][c] = _mm512_fmadd_ps(d, sums, lanes[p][c]);
                } else {
                    // `sum * d_activation`, exactly: the biased sum times `d` minus the bias
                    // times `d` is rounded once, and the product needs at most 24 bits (see
                    // `exact_activation_scaling`).
                    let scaled = _mm512_fmadd_ps(_mm512_castsi512_ps(sums), act_d, bias_d);
                    // `d_weight * (sum * d_activation)` is the exact real product that
                    // llama.cpp's FMA of `d0 * d1` (itself exact) with the sum rounds once.
                    lanes[p][c] = _mm512_fmadd_ps(weight_scales[p], scaled, lanes[p][c]);
                }
            }
        }
    }
    for p in 0..P {
        let (mut m, mut single) = ([0.0f32; 16], [0.0f32; 4]);
        // SAFETY: sixteen and four f32 fit `m` and `single`.
        unsafe {
            _mm512_storeu_ps(m.as_mut_ptr(), mins[p]);
            _mm_storeu_ps(single.as_mut_ptr(), single_mins[p]);
        }
        for c in 0..C {
            let sums = hsum8_pair::<KIND>(lanes[p][c]);
            for (half, result) in results[p][c].iter_mut().enumerate() {
                let min = if KIND == Q4_1 && C == 1 {
                    single[2 + half]
                } else if KIND == Q4_1 {
                    m[2 * (lane0 + c) + half]
                } else {
                    0.0
                };
                *result = sums[half] + min;
            }
        }
    }
}

/// `hsum8` of each row's eight lanes of a pair register, vectorised: `(l[i] + l[4 + i])`, then
/// `(r0 + r2) + (r1 + r3)` (the same additions, so the same bits).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum8_pair<const KIND: u8>(acc: __m512) -> [f32; 2] {
    // Bring each row's lanes 4-7 of its eight onto its lanes 0-3 (128-bit blocks: 4-bit rows
    // own blocks 0 and 2 / 1 and 3; Q8_0 rows own blocks 0 and 1 / 2 and 3).
    let swapped = if KIND == Q8_0 {
        _mm512_shuffle_f32x4::<0b10_11_00_01>(acc, acc)
    } else {
        _mm512_shuffle_f32x4::<0b01_00_11_10>(acc, acc)
    };
    let r = _mm512_add_ps(acc, swapped);
    let halves = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
    let total = _mm512_add_ps(halves, _mm512_permute_ps::<0b10_11_00_01>(halves));
    let mut out = [0.0f32; 16];
    // SAFETY: sixteen f32 fit `out`.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), total) };
    let second = if KIND == Q8_0 { 8 } else { 4 };
    [out[0], out[second]]
}

#[cfg(test)]
mod tests {
    use super::super::spread::{FLOAT_BIAS, FLOAT_BIAS_VALUE};
    use crate::quant::f16_bits_to_f32;
    use libm::fmaf;

    /// The identity the 4-bit kernels rely on (see the module documentation), checked for
    /// every group sum a 4-bit block can produce, activation scales across every f16 exponent
    /// (normal and subnormal, both signs), and weight scales and lanes of mixed magnitudes.
    #[test]
    fn exact_activation_scaling() {
        let mut checked = 0u64;
        for bits in (0u16..0x7c00)
            .step_by(97)
            .chain([0x0001, 0x03ff, 0x0400, 0x7bff])
        {
            for sign in [0u16, 0x8000] {
                let d1 = f16_bits_to_f32(bits | sign);
                let bias_d = -FLOAT_BIAS_VALUE * d1;
                for sum in -8192i32..=8192 {
                    let biased = f32::from_bits((FLOAT_BIAS + sum) as u32);
                    let scaled = fmaf(biased, d1, bias_d);
                    assert_eq!(scaled, sum as f32 * d1, "sum {sum} d1 {d1:e}");
                    assert_eq!(f64::from(scaled), f64::from(sum) * f64::from(d1));
                    if sum % 61 == 0 {
                        let d0 =
                            f16_bits_to_f32(bits.wrapping_mul(7).wrapping_add(0x1234) % 0x7c00);
                        let lane = (sum as f32) * 1.337e-3 * d1 - 0.5;
                        assert_eq!(
                            fmaf(d0, scaled, lane).to_bits(),
                            fmaf(d0 * d1, sum as f32, lane).to_bits(),
                            "d0 {d0:e} d1 {d1:e} sum {sum}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000_000);
    }
}
