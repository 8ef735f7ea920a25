//! Attention of one query head over a KV cache stored as f16, reproducing how llama.cpp's CPU
//! backend rounds and sums (flash attention off): the query and the softmax probabilities are
//! rounded to f16 like the cached keys and values, so every product is exact in f32 and only the
//! summation order matters. That order depends on the path llama.cpp takes:
//! - one token per step (decode): `ggml_vec_dot_f16`, four 16-lane accumulators over 64-element
//!   steps, combined `(0+2)+(1+3)`, then a 16-lane tree; a tail past the last 64 in f64.
//! - several tokens per step (prompt): llamafile's tinyBLAS, one 16-lane accumulator, then the
//!   tree (when the length is a multiple of 16; otherwise the decode path is used).
//!
//! The key/value length llama.cpp works over (`n_kv`) is the cache fill after the step rounded up
//! to 32, capped at the context size; positions past the query's own are masked to probability
//! 0. It decides where the f64 tail of the decode order starts, so it matters for exactness.
//!
//! Keys and values arrive as f16 bits (the cache's storage) and are widened to f32 as they are
//! loaded; widening is exact, so the arithmetic is the same as over f32 copies.

use super::math::{Fma, reduce16};
use crate::cpu::SimdLevel;

/// Which of llama.cpp's summation orders to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumOrder {
    /// One token in the step.
    Decode,
    /// Several tokens in the step.
    Batch,
}

/// llama.cpp (the reference build, flash attention off) rounds `n_kv` up to a multiple of 32.
const KV_PAD: usize = 32;

/// `n_kv` when the cache holds positions `0..=last` in a context of `capacity` positions.
pub fn padded_kv_len(last: usize, capacity: usize) -> usize {
    (last + 1)
        .div_ceil(KV_PAD)
        .saturating_mul(KV_PAD)
        .min(capacity)
}

/// Sixteen values starting at `at` (the caller keeps `at + 16 <= v.len()`).
#[inline(always)]
fn lanes16(v: &[f32], at: usize) -> &[f32; 16] {
    v[at..at + 16].try_into().unwrap_or(&[0.0; 16])
}

/// Sixteen f16 values starting at `at`, widened (the caller keeps `at + 16 <= bits.len()`).
#[inline(always)]
fn widened16<F: Fma>(bits: &[u16], at: usize) -> [f32; 16] {
    let bits: &[u16; 16] = bits[at..at + 16].try_into().unwrap_or(&[0; 16]);
    // A plain loop: `array::map` would run the conversion in a function compiled without the
    // SIMD level's target features, one call per element.
    let mut wide = [0.0f32; 16];
    for (w, &b) in wide.iter_mut().zip(bits) {
        *w = F::f16_value(b);
    }
    wide
}

/// `Σ a[i] * b[i]` of exact products in the order of the given path (see the module docs), `b`
/// given as f16 bits.
#[inline(always)]
fn ordered_dot<F: Fma>(order: SumOrder, a: &[f32], b: &[u16]) -> f32 {
    let len = a.len().min(b.len());
    if order == SumOrder::Batch && len.is_multiple_of(16) {
        let mut acc = [0.0f32; 16];
        for start in (0..len).step_by(16) {
            let (x, y) = (lanes16(a, start), widened16::<F>(b, start));
            for l in 0..16 {
                acc[l] += x[l] * y[l];
            }
        }
        return reduce16(&acc);
    }
    let vector_end = len / 64 * 64;
    let mut acc = [[0.0f32; 16]; 4];
    for start in (0..vector_end).step_by(64) {
        for (j, lanes) in acc.iter_mut().enumerate() {
            let x = lanes16(a, start + 16 * j);
            let y = widened16::<F>(b, start + 16 * j);
            for l in 0..16 {
                lanes[l] += x[l] * y[l];
            }
        }
    }
    let mut combined = [0.0f32; 16];
    for l in 0..16 {
        combined[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let mut sum = f64::from(reduce16(&combined));
    for i in vector_end..len {
        sum += f64::from(a[i] * F::f16_value(b[i]));
    }
    sum as f32
}

/// Computes the raw dot products of the (f16-rounded) query with the keys (f16 bits) of
/// positions `0..dots.len()`, each in the order [`ordered_dot`] defines; `F` widens the keys.
trait Dots {
    fn dots<F: Fma>(order: SumOrder, query: &[f32], keys: &[u16], dots: &mut [f32]);

    /// The probability-weighted sum of the values ([`weighted_values_reference`]'s contract).
    #[inline(always)]
    fn weighted_values<F: Fma>(
        order: SumOrder,
        probs_f16: &[f32],
        values: &[u16],
        lengths: (usize, usize),
        scratch: (&mut [f32], &mut [f64]),
        out: &mut [f32],
    ) {
        weighted_values_reference::<F>(order, probs_f16, values, lengths, scratch, out)
    }
}

/// One position at a time with [`ordered_dot`] (the reference, any head size).
struct PlainDots;

impl Dots for PlainDots {
    #[inline(always)]
    fn dots<F: Fma>(order: SumOrder, query: &[f32], keys: &[u16], dots: &mut [f32]) {
        let head_dim = query.len();
        for (p, dot) in dots.iter_mut().enumerate() {
            *dot = ordered_dot::<F>(order, query, &keys[p * head_dim..(p + 1) * head_dim]);
        }
    }
}

/// Scratch space for one head's attention, sized once for the context.
#[derive(Debug, Clone)]
pub struct AttentionScratch {
    query: alloc::vec::Vec<f32>,
    scores: alloc::vec::Vec<f32>,
    probs: alloc::vec::Vec<f32>,
    probs_f16: alloc::vec::Vec<f32>,
    /// Rows of the output's per-lane partial sums as they are combined: four lane rows at the
    /// start, the sixteen combined rows from row 64 (`[80][head_dim]` in all).
    partial: alloc::vec::Vec<f32>,
    /// Per output element, the f64 sum of the positions past the vector part (decode order).
    tail: alloc::vec::Vec<f64>,
}

impl AttentionScratch {
    pub fn new(capacity: usize, head_dim: usize) -> Self {
        Self {
            query: alloc::vec![0.0; head_dim],
            scores: alloc::vec![0.0; capacity],
            probs: alloc::vec![0.0; capacity],
            probs_f16: alloc::vec![0.0; capacity],
            partial: alloc::vec![0.0; 80 * head_dim],
            tail: alloc::vec![0.0; head_dim],
        }
    }
}

/// One query head at position `pos` over `keys`/`values` (`[position][head_dim]` f16 bits, at
/// least `pos + 1` positions) into `out` (`head_dim` values); `n_kv` from [`padded_kv_len`].
/// The arithmetic is the same at every level; the SIMD levels only use wider registers (the
/// lane-wise operations, and so every bit, are unchanged).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    level: SimdLevel,
    order: SumOrder,
    query: &[f32],
    keys: &[u16],
    values: &[u16],
    pos: usize,
    n_kv: usize,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match level {
        SimdLevel::Avx512 => {
            // SAFETY: the level was checked against CPUID/XCR0 when the kernels were chosen.
            return unsafe {
                wide::attend_avx512(order, query, keys, values, pos, n_kv, scratch, out)
            };
        }
        SimdLevel::Avx2 => {
            // SAFETY: as above.
            return unsafe {
                wide::attend_avx2(order, query, keys, values, pos, n_kv, scratch, out)
            };
        }
        SimdLevel::Scalar => {}
    }
    attend_generic::<super::math::SoftFma, PlainDots>(
        order, query, keys, values, pos, n_kv, scratch, out,
    )
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{
        AttentionScratch, Dots, PlainDots, SumOrder, attend_generic, weighted_values_reference,
    };
    use crate::model::math::{Fma, HardFma};
    use core::arch::x86_64::*;

    /// Sixteen f16 values (bits) from `bits`, widened to f32 (exact).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `bits` must point at sixteen readable `u16`.
    #[inline(always)]
    unsafe fn widened16(bits: *const u16) -> __m512 {
        // SAFETY: the caller's contract: 32 readable bytes, AVX-512F available.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(bits.cast::<__m256i>())) }
    }

    /// Sixteen positions at a time when the head size is 64 (one 64-element step of the decode
    /// order, or four 16-lane steps of the batch order): the per-lane sums of each position are
    /// formed vertically, then the sixteen 16-lane trees of `reduce16` run side by side with
    /// shuffles, level by level, so every addition is the reference's (float addition is
    /// commutative, so which operand a shuffle puts first does not change a bit). Other head
    /// sizes and the last `len % 16` positions take the reference path.
    pub(super) struct Avx512Dots;

    impl Dots for Avx512Dots {
        #[inline(always)]
        fn dots<F: Fma>(order: SumOrder, query: &[f32], keys: &[u16], dots: &mut [f32]) {
            if query.len() != 64 {
                return PlainDots::dots::<F>(order, query, keys, dots);
            }
            let whole = dots.len() / 16 * 16;
            for (block, out) in dots[..whole].chunks_exact_mut(16).enumerate() {
                let keys = &keys[block * 16 * 64..(block + 1) * 16 * 64];
                // SAFETY: only reached from `attend_avx512`, whose caller checked AVX-512F;
                // `query` has 64 values, `keys` 16 x 64 and `out` 16.
                unsafe { dots16_head64(order, query, keys, out) };
            }
            PlainDots::dots::<F>(order, query, &keys[whole * 64..], &mut dots[whole..]);
        }

        #[inline(always)]
        fn weighted_values<F: Fma>(
            order: SumOrder,
            probs_f16: &[f32],
            values: &[u16],
            lengths: (usize, usize),
            scratch: (&mut [f32], &mut [f64]),
            out: &mut [f32],
        ) {
            if out.len() != 64 {
                return weighted_values_reference::<F>(
                    order, probs_f16, values, lengths, scratch, out,
                );
            }
            // SAFETY: only reached from `attend_avx512`, whose caller checked AVX-512F; the
            // head is 64 wide, `values` holds `valid` positions of it and `probs_f16` `valid`
            // probabilities (the attention's contract).
            unsafe { weighted_head64(order, probs_f16, values, lengths, out) }
        }
    }

    /// [`weighted_values_reference`] for a 64-wide head with every lane row and the f64 tail
    /// held in registers: the same additions in the same order (products of f16 values are
    /// exact in f32, so a fused multiply-add is the reference's `acc + prob * v`).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `out` is 64 values, `values` at least `valid x 64`,
    /// `probs` at least `valid`.
    #[target_feature(enable = "avx512f")]
    unsafe fn weighted_head64(
        order: SumOrder,
        probs: &[f32],
        values: &[u16],
        (valid, n_kv): (usize, usize),
        out: &mut [f32],
    ) {
        let batch_order = order == SumOrder::Batch && n_kv.is_multiple_of(16);
        let lanes = if batch_order { 16 } else { 64 };
        let vector_end = if batch_order { n_kv } else { n_kv / 64 * 64 };
        let summed = valid.min(vector_end);
        let zero = _mm512_setzero_ps();
        let value = |p: usize, j: usize| {
            // SAFETY: `p < valid`, so `values[64 p + 16 j..][..16]` is inside the slice; the
            // caller checked AVX-512F.
            unsafe { widened16(values[p * 64..p * 64 + 64].as_ptr().add(16 * j)) }
        };
        let lane_row = |r: usize| {
            let mut acc = [zero; 4];
            for p in (r..summed).step_by(lanes) {
                let prob = _mm512_set1_ps(probs[p]);
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(prob, value(p, j), *acc);
                }
            }
            acc
        };
        let add = |a: [__m512; 4], b: [__m512; 4]| -> [__m512; 4] {
            core::array::from_fn(|j| _mm512_add_ps(a[j], b[j]))
        };
        let mut rows: [[__m512; 4]; 16] = core::array::from_fn(|l| {
            if batch_order {
                lane_row(l)
            } else {
                // Lane l of accumulator j is lane row 16 j + l: (0 + 2) + (1 + 3).
                add(
                    add(lane_row(l), lane_row(32 + l)),
                    add(lane_row(16 + l), lane_row(48 + l)),
                )
            }
        });
        for width in [8, 4] {
            for l in 0..width {
                rows[l] = add(rows[l], rows[l + width]);
            }
        }
        let total = add(add(rows[0], rows[2]), add(rows[1], rows[3]));
        if batch_order {
            for (j, lanes) in total.iter().enumerate() {
                // SAFETY: `out` holds 64 values.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * j), *lanes) };
            }
            return;
        }
        let halves = |x: __m512| {
            let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x));
            (
                _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
                _mm512_cvtps_pd(_mm256_castpd_ps(high)),
            )
        };
        let mut tail: [__m512d; 8] = [_mm512_setzero_pd(); 8];
        for (j, lanes) in total.iter().enumerate() {
            (tail[2 * j], tail[2 * j + 1]) = halves(*lanes);
        }
        for (p, &prob) in probs.iter().enumerate().take(valid).skip(vector_end) {
            let prob = _mm512_set1_ps(prob);
            for j in 0..4 {
                let (low, high) = halves(_mm512_mul_ps(prob, value(p, j)));
                tail[2 * j] = _mm512_add_pd(tail[2 * j], low);
                tail[2 * j + 1] = _mm512_add_pd(tail[2 * j + 1], high);
            }
        }
        for (k, sum) in tail.iter().enumerate() {
            // SAFETY: `out` holds 64 values; eight at a time.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * k), _mm512_cvtpd_ps(*sum)) };
        }
    }

    /// The 16 dot products of `query` (64 values) with 16 consecutive keys (`16 x 64` f16 bits).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the slices must have the sizes above.
    #[target_feature(enable = "avx512f")]
    unsafe fn dots16_head64(order: SumOrder, query: &[f32], keys: &[u16], out: &mut [f32]) {
        debug_assert!(query.len() == 64 && keys.len() == 16 * 64 && out.len() == 16);
        let zero = _mm512_setzero_ps();
        // SAFETY: `query` holds 64 f32 (checked by the caller), four unaligned 16-lane loads.
        let q: [__m512; 4] =
            core::array::from_fn(|j| unsafe { _mm512_loadu_ps(query.as_ptr().add(16 * j)) });
        let lanes: [__m512; 16] = core::array::from_fn(|i| {
            // SAFETY: key `i` is `keys[64 i..64 i + 64]`, inside the 16 x 64 slice.
            let k: [__m512; 4] =
                core::array::from_fn(|j| unsafe { widened16(keys.as_ptr().add(64 * i + 16 * j)) });
            // Products of f16-rounded values are exact in f32, so the fused form is the
            // reference's `0 + x * y` (and `acc + x * y`) to the bit.
            match order {
                SumOrder::Decode => {
                    let a: [__m512; 4] =
                        core::array::from_fn(|j| _mm512_fmadd_ps(q[j], k[j], zero));
                    _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]))
                }
                SumOrder::Batch => {
                    let mut acc = _mm512_fmadd_ps(q[0], k[0], zero);
                    for j in 1..4 {
                        acc = _mm512_fmadd_ps(q[j], k[j], acc);
                    }
                    acc
                }
            }
        });
        // Level 1 (lane i + 8 onto lane i): T_k holds position 2k's eight sums in its low half
        // and position 2k + 1's in its high half.
        let t: [__m512; 8] = core::array::from_fn(|k| {
            let (a, b) = (lanes[2 * k], lanes[2 * k + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            )
        });
        // Level 2 (lane i + 4 onto lane i): 128-bit chunk j of U_m is position 4m + j.
        let u: [__m512; 4] = core::array::from_fn(|m| {
            let (a, b) = (t[2 * m], t[2 * m + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // Level 3 (lanes 0 + 2 and 1 + 3): chunk j of V_n holds positions 8n + j (lanes 0, 1)
        // and 8n + 4 + j (lanes 2, 3).
        let v: [__m512; 2] = core::array::from_fn(|n| {
            let (a, b) = (u[2 * n], u[2 * n + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
                _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
            )
        });
        // Level 4 ((0 + 2) + (1 + 3)): lane 4j + t is position 4t + j.
        let r = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(v[0], v[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(v[0], v[1]),
        );
        let order_index = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        // SAFETY: `out` holds 16 f32.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), _mm512_permutexvar_ps(order_index, r)) };
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx512(
        order: SumOrder,
        query: &[f32],
        keys: &[u16],
        values: &[u16],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma, Avx512Dots>(order, query, keys, values, pos, n_kv, scratch, out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx2(
        order: SumOrder,
        query: &[f32],
        keys: &[u16],
        values: &[u16],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma, PlainDots>(order, query, keys, values, pos, n_kv, scratch, out)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_generic<F: super::math::Fma, D: Dots>(
    order: SumOrder,
    query: &[f32],
    keys: &[u16],
    values: &[u16],
    pos: usize,
    n_kv: usize,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    let head_dim = query.len();
    let valid = pos + 1;
    for (q16, &q) in scratch.query.iter_mut().zip(query) {
        *q16 = F::round_f16(q);
    }
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    D::dots::<F>(order, &scratch.query, keys, &mut scratch.scores[..valid]);
    let mut max = f32::NEG_INFINITY;
    for w in &mut scratch.scores[..valid] {
        *w *= scale;
        if *w > max {
            max = *w;
        }
    }
    let sum = super::math::softmax_exp_generic::<F>(
        &scratch.scores,
        valid,
        n_kv,
        max,
        &mut scratch.probs,
    );
    let inverse = (1.0 / sum) as f32;
    for p in 0..valid {
        scratch.probs_f16[p] = F::round_f16(scratch.probs[p] * inverse);
    }
    D::weighted_values::<F>(
        order,
        &scratch.probs_f16,
        values,
        (valid, n_kv),
        (&mut scratch.partial, &mut scratch.tail),
        &mut out[..head_dim],
    );
}

/// `out[d] = Σ_p probs_f16[p] * values[p][d]` over positions `0..valid` in the order of the path
/// (see the module docs), for any head size, the values given as f16 bits (`F` widens them);
/// `partial` and `tail_scratch` are the scratch's lane rows and f64 tail.
#[inline(always)]
fn weighted_values_reference<F: Fma>(
    order: SumOrder,
    probs_f16: &[f32],
    values: &[u16],
    (valid, n_kv): (usize, usize),
    (partial, tail_scratch): (&mut [f32], &mut [f64]),
    out: &mut [f32],
) {
    let head_dim = out.len();
    // Output element d is Σ_p prob[p] * v[p][d] in the order above. Positions accumulate into
    // per-lane partial rows (lane = position mod 16 or 64), so every loop runs over d, which is
    // contiguous in the cache; the lanes are then combined row-wise in the same tree.
    let batch_order = order == SumOrder::Batch && n_kv.is_multiple_of(16);
    let lanes = if batch_order { 16 } else { 64 };
    let vector_end = if batch_order { n_kv } else { n_kv / 64 * 64 };
    let summed = valid.min(vector_end);
    /// A lane row's first position, the end of the summed positions, the step between them.
    type Lane = (usize, usize, usize);
    // Lane row `r` (the accumulator lane position `p` lands in, `p % lanes`) is the sum of
    // `prob * v` over its positions in order, from +0; each is built in a scratch row just
    // before it is combined, so no `lanes x head_dim` buffer is written and read back. A
    // function, not a closure: a closure would not inherit the SIMD level's target features,
    // and the f16 conversion would become a call per element.
    #[inline(always)]
    fn lane_row<F: Fma>(values: &[u16], probs: &[f32], (r, summed, lanes): Lane, into: &mut [f32]) {
        let head_dim = into.len();
        into.fill(0.0);
        for p in (r..summed).step_by(lanes) {
            let prob = probs[p];
            for (acc, &v) in into
                .iter_mut()
                .zip(&values[p * head_dim..(p + 1) * head_dim])
            {
                *acc += prob * F::f16_value(v);
            }
        }
    }
    let (rows, combined) = partial.split_at_mut(64 * head_dim);
    let (probs, lane) = (probs_f16, |r: usize| (r, summed, lanes));
    let combined = &mut combined[..16 * head_dim];
    if batch_order {
        for (l, out) in combined.chunks_exact_mut(head_dim).enumerate() {
            lane_row::<F>(values, probs, lane(l), out);
        }
    } else {
        // Lane l of accumulator j is lane row 16 j + l: (0 + 2) + (1 + 3) per lane.
        let (a, rest) = rows.split_at_mut(head_dim);
        let (b, rest) = rest.split_at_mut(head_dim);
        let (c, rest) = rest.split_at_mut(head_dim);
        let d = &mut rest[..head_dim];
        for (l, out) in combined.chunks_exact_mut(head_dim).enumerate() {
            lane_row::<F>(values, probs, lane(l), a);
            lane_row::<F>(values, probs, lane(32 + l), b);
            lane_row::<F>(values, probs, lane(16 + l), c);
            lane_row::<F>(values, probs, lane(48 + l), d);
            for i in 0..head_dim {
                out[i] = (a[i] + b[i]) + (c[i] + d[i]);
            }
        }
    }
    // The 16-lane tree of `reduce16`, row-wise: halves, quarters, then (0 + 2) + (1 + 3).
    for width in [8, 4] {
        for l in 0..width {
            for i in 0..head_dim {
                combined[l * head_dim + i] += combined[(l + width) * head_dim + i];
            }
        }
    }
    if batch_order {
        for (d, o) in out.iter_mut().enumerate().take(head_dim) {
            let lane = |l: usize| combined[l * head_dim + d];
            *o = (lane(0) + lane(2)) + (lane(1) + lane(3));
        }
    } else {
        // Positions past the last whole 64 are added in f64, one after another for every output
        // element: walking positions outermost keeps each step a contiguous (vector) pass.
        let tail = &mut tail_scratch[..head_dim];
        for (d, t) in tail.iter_mut().enumerate() {
            let lane = |l: usize| combined[l * head_dim + d];
            *t = f64::from((lane(0) + lane(2)) + (lane(1) + lane(3)));
        }
        for p in vector_end..valid {
            let prob = probs_f16[p];
            for (t, &v) in tail
                .iter_mut()
                .zip(&values[p * head_dim..(p + 1) * head_dim])
            {
                *t += f64::from(prob * F::f16_value(v));
            }
        }
        for (o, &t) in out.iter_mut().zip(tail.iter()) {
            *o = t as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::math::SoftFma;

    /// Values exactly representable in f16 (the cache and the rounded query hold only those),
    /// spread over several binades and both signs.
    fn f16_values(count: usize, seed: u64) -> alloc::vec::Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let mantissa = ((state >> 33) % 2048) as f32 - 1024.0;
                let exponent = ((state >> 50) % 12) as i32 - 16;
                half::f16::from_f32(mantissa * libm::exp2f(exponent as f32)).to_f32()
            })
            .collect()
    }

    /// [`f16_values`] as the cache stores them.
    fn f16_bits(count: usize, seed: u64) -> alloc::vec::Vec<u16> {
        f16_values(count, seed)
            .into_iter()
            .map(crate::quant::f32_to_f16_bits)
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_position_dots_equal_the_reference_order() {
        if SimdLevel::detect() < SimdLevel::Avx512 {
            return;
        }
        let keys = f16_bits(37 * 64, 11);
        for seed in 0..20 {
            let query = f16_values(64, 100 + seed);
            for order in [SumOrder::Decode, SumOrder::Batch] {
                for len in [16, 32, 37] {
                    let mut expected = alloc::vec![0.0f32; len];
                    let mut got = alloc::vec![f32::NAN; len];
                    PlainDots::dots::<SoftFma>(order, &query, &keys, &mut expected);
                    wide::Avx512Dots::dots::<SoftFma>(order, &query, &keys, &mut got);
                    for (p, (a, b)) in expected.iter().zip(&got).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{order:?} position {p}: {a} {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_level_attends_bit_for_bit_like_the_scalar_reference() {
        let levels: alloc::vec::Vec<SimdLevel> = [SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|level| crate::cpu::SimdLevel::detect() >= *level)
            .collect();
        for (head_dim, capacity) in [(64, 96), (64, 90), (48, 96)] {
            let keys = f16_bits(capacity * head_dim, 1);
            let values = f16_bits(capacity * head_dim, 2);
            for (seed, pos) in [(3, 0), (4, 14), (5, 15), (6, 16), (7, 33), (8, 63), (9, 89)] {
                let query = f16_values(head_dim, seed);
                for order in [SumOrder::Decode, SumOrder::Batch] {
                    let n_kv = padded_kv_len(pos, capacity);
                    let mut scratch = AttentionScratch::new(capacity, head_dim);
                    let mut expected = alloc::vec![0.0f32; head_dim];
                    attend(
                        SimdLevel::Scalar,
                        order,
                        &query,
                        &keys,
                        &values,
                        pos,
                        n_kv,
                        &mut scratch,
                        &mut expected,
                    );
                    for &level in &levels {
                        let mut got = alloc::vec![f32::NAN; head_dim];
                        attend(
                            level,
                            order,
                            &query,
                            &keys,
                            &values,
                            pos,
                            n_kv,
                            &mut scratch,
                            &mut got,
                        );
                        let same = expected
                            .iter()
                            .zip(&got)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{level:?} {order:?} head {head_dim} pos {pos}");
                    }
                }
            }
        }
    }
}
