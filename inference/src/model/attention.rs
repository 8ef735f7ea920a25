//! Attention of the query heads that share a KV head (grouped-query attention) over a KV cache
//! stored as f16, each head exactly as alone, reproducing how llama.cpp's CPU backend rounds and
//! sums (flash attention off): the query and the softmax probabilities are rounded to f16 like
//! the cached keys and values, so every product is exact in f32 and only the summation order
//! matters. That order depends on the path llama.cpp takes:
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

/// Where a group's per-head rows sit: `heads` query heads of `head_dim` values, and per head a
/// row of `stride` scores or probabilities (the context's capacity) in the scratch.
#[derive(Debug, Clone, Copy)]
struct Shape {
    heads: usize,
    head_dim: usize,
    stride: usize,
}

/// The raw dot products of each (f16-rounded) query of a group with the keys (f16 bits) of
/// positions `0..valid`, each in the order [`ordered_dot`] defines, each head's softmax of them,
/// and the probability-weighted sums of the values; `F` widens the keys and values. By default
/// one head at a time, with the scalar reference's operations.
trait Dots {
    /// Head `h`'s products (its query is `queries[h * head_dim..][..head_dim]`) into
    /// `scores[h * stride..][..valid]`. `values` are the rows [`Self::weighted_values`] reads
    /// next, which an implementation may ask the memory for while it works on the keys.
    #[inline(always)]
    fn dots<F: Fma>(
        order: SumOrder,
        shape: Shape,
        queries: &[f32],
        (keys, values): (&[u16], &[u16]),
        valid: usize,
        scores: &mut [f32],
    ) {
        let _ = values;
        for (query, scores) in queries
            .chunks_exact(shape.head_dim)
            .zip(scores.chunks_exact_mut(shape.stride))
        {
            plain_dots::<F>(order, query, keys, &mut scores[..valid]);
        }
    }

    /// Head `h`'s output (`out[h * head_dim..][..head_dim]`) from its probabilities
    /// (`probs_f16[h * stride..]`), each with [`weighted_values_reference`]'s contract.
    #[inline(always)]
    fn weighted_values<F: Fma>(
        order: SumOrder,
        shape: Shape,
        probs_f16: &[f32],
        values: &[u16],
        lengths: (usize, usize),
        (partial, tail): (&mut [f32], &mut [f64]),
        out: &mut [f32],
    ) {
        for (probs, out) in probs_f16
            .chunks_exact(shape.stride)
            .zip(out.chunks_exact_mut(shape.head_dim))
        {
            weighted_values_reference::<F>(
                order,
                probs,
                values,
                lengths,
                (&mut *partial, &mut *tail),
                out,
            );
        }
    }

    /// One head's probabilities from its raw `scores` (a row of the scratch; the first `valid`
    /// are the dot products, scaled here in place) into `probs_f16[..valid]`, with `probs` (at
    /// least `n_kv` long) for the unrounded numerators: [`probabilities_reference`]'s bits.
    #[inline(always)]
    fn probabilities<F: Fma>(
        scale: f32,
        lengths: (usize, usize),
        scores: &mut [f32],
        probs: &mut [f32],
        probs_f16: &mut [f32],
    ) {
        probabilities_reference::<F>(scale, lengths, scores, probs, probs_f16)
    }
}

/// One head's softmax as ggml_vec_soft_max_f32 forms it, the reference for
/// [`Dots::probabilities`]: the scores scaled in place and their maximum (NaN scores skipped by
/// `>`), the exponentials' sum ([`softmax_exp_generic`](super::math::softmax_exp_generic)),
/// then each probability rounded to f16.
#[inline(always)]
fn probabilities_reference<F: Fma>(
    scale: f32,
    (valid, n_kv): (usize, usize),
    scores: &mut [f32],
    probs: &mut [f32],
    probs_f16: &mut [f32],
) {
    let mut max = f32::NEG_INFINITY;
    for w in &mut scores[..valid] {
        *w *= scale;
        if *w > max {
            max = *w;
        }
    }
    let sum = super::math::softmax_exp_generic::<F>(scores, valid, n_kv, max, probs);
    let inverse = (1.0 / sum) as f32;
    for (p16, &p) in probs_f16[..valid].iter_mut().zip(&probs[..valid]) {
        *p16 = F::round_f16(p * inverse);
    }
}

/// One head at a time, one position at a time with [`ordered_dot`] (the reference, any head
/// size).
struct PlainDots;

impl Dots for PlainDots {}

/// One head's products with the keys of positions `0..dots.len()`, one position at a time.
#[inline(always)]
fn plain_dots<F: Fma>(order: SumOrder, query: &[f32], keys: &[u16], dots: &mut [f32]) {
    let head_dim = query.len();
    for (p, dot) in dots.iter_mut().enumerate() {
        *dot = ordered_dot::<F>(order, query, &keys[p * head_dim..(p + 1) * head_dim]);
    }
}

/// Scratch space for the attention of a group of query heads sharing a KV head, sized once for
/// the context: its head size, capacity and most heads are the lengths of `tail`, `probs` and
/// `queries` (over the head size).
#[derive(Debug, Clone)]
pub struct AttentionScratch {
    /// The group's queries rounded to f16, `[head][head_dim]`.
    queries: alloc::vec::Vec<f32>,
    /// Per head, the dot products with the keys, `[head][capacity]`.
    scores: alloc::vec::Vec<f32>,
    /// One head's softmax numerators (the heads take turns).
    probs: alloc::vec::Vec<f32>,
    /// Per head, the probabilities rounded to f16, `[head][capacity]`: every head's are ready
    /// before the values are read, so a kernel can widen each value row once for the group.
    probs_f16: alloc::vec::Vec<f32>,
    /// Rows of one head's per-lane partial sums as they are combined (reference path): four
    /// lane rows at the start, the sixteen combined rows from row 64 (`[80][head_dim]` in all).
    partial: alloc::vec::Vec<f32>,
    /// Per output element, the f64 sum of the positions past the vector part (decode order).
    tail: alloc::vec::Vec<f64>,
}

impl AttentionScratch {
    /// Scratch for one head at a time.
    #[cfg(test)]
    pub fn new(capacity: usize, head_dim: usize) -> Self {
        Self::for_group(capacity, head_dim, 1)
    }

    /// Scratch for groups of up to `group` query heads of `head_dim` over `capacity` positions.
    pub fn for_group(capacity: usize, head_dim: usize, group: usize) -> Self {
        Self {
            queries: alloc::vec![0.0; group * head_dim],
            scores: alloc::vec![0.0; group * capacity],
            probs: alloc::vec![0.0; capacity],
            probs_f16: alloc::vec![0.0; group * capacity],
            partial: alloc::vec![0.0; 80 * head_dim],
            tail: alloc::vec![0.0; head_dim],
        }
    }
}

/// One query head: [`attend_group`] with a group of one.
#[cfg(test)]
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
    attend_group(level, order, query, keys, values, pos, n_kv, scratch, out)
}

/// The query heads that share one KV head (`queries`, `[head][head_dim]` with the scratch's
/// head size, at most the scratch's group of heads) at position `pos` over that KV head's
/// `keys`/`values` (`[position][head_dim]` f16 bits, at least `pos + 1` positions) into `out`
/// (`[head][head_dim]`); `n_kv` from [`padded_kv_len`]. Every head's arithmetic is the same as
/// it would be alone, and the same at every level: the SIMD levels only use wider registers
/// (the lane-wise operations, and so every bit, are unchanged), and AVX-512 widens each key and
/// value row once for several heads.
#[allow(clippy::too_many_arguments)]
pub fn attend_group(
    level: SimdLevel,
    order: SumOrder,
    queries: &[f32],
    keys: &[u16],
    values: &[u16],
    pos: usize,
    n_kv: usize,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    debug_assert!(queries.len() == out.len() && queries.len() <= scratch.queries.len());
    #[cfg(target_arch = "x86_64")]
    match level {
        SimdLevel::Avx512 => {
            // SAFETY: the level was checked against CPUID/XCR0 when the kernels were chosen.
            return unsafe {
                wide::attend_avx512(order, queries, keys, values, pos, n_kv, scratch, out)
            };
        }
        SimdLevel::Avx2 => {
            // SAFETY: as above.
            return unsafe {
                wide::attend_avx2(order, queries, keys, values, pos, n_kv, scratch, out)
            };
        }
        SimdLevel::Scalar => {}
    }
    attend_generic::<super::math::SoftFma, PlainDots>(
        order, queries, keys, values, pos, n_kv, scratch, out,
    )
}

#[cfg(target_arch = "x86_64")]
mod wide {
    //! The AVX-512 kernels are `#[inline(always)]` functions with one contract, that the CPU has
    //! AVX-512F: they are compiled into `attend_avx512` (closures and `array::from_fn` would
    //! not inherit its target features and would stay calls, their vectors passed in memory).

    use super::{AttentionScratch, Dots, PlainDots, Shape, SumOrder, attend_generic, plain_dots};
    use crate::model::math::{Fma, HardFma, wide16};
    use core::arch::x86_64::*;
    use core::ops::Range;

    /// The most heads one pass over the keys or values serves. With three, the queries take
    /// twelve of the 32 vector registers and each head's pending tree levels up to four more,
    /// so the dot products already spill a few partial sums per 16 keys (stores and loads,
    /// beside the widening and FMA ports that bound the kernel); a fourth head would spill its
    /// queries too. Bigger groups are split into runs ([`head_runs`]).
    pub(super) const MOST_SHARED: usize = 3;

    /// `0..heads` split into runs of at most [`MOST_SHARED`] heads, as even as possible.
    pub(super) fn head_runs(heads: usize) -> impl Iterator<Item = Range<usize>> {
        let runs = heads.div_ceil(MOST_SHARED);
        (0..runs).map(move |i| i * heads / runs..(i + 1) * heads / runs)
    }

    /// Columns `16 j..16 j + 16` of a 64-wide row.
    #[inline(always)]
    fn quarter<T>(row: &[T; 64], j: usize) -> &[T; 16] {
        &row.as_chunks::<16>().0[j]
    }

    /// Sixteen f16 values (bits) widened to f32 (exact).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn widened16(bits: &[u16; 16]) -> __m512 {
        // SAFETY: the reference covers the 32 bytes read; AVX-512F by the contract.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(bits.as_ptr().cast::<__m256i>())) }
    }

    /// Sixteen positions at a time when the head size is 64 (one 64-element step of the decode
    /// order, or four 16-lane steps of the batch order), each key widened once for up to
    /// [`MOST_SHARED`] heads: the per-lane sums of each position are formed vertically, then
    /// the sixteen 16-lane trees of `reduce16` run side by side with shuffles, level by level,
    /// so every addition is the reference's (float addition is commutative, so which operand a
    /// shuffle puts first does not change a bit). The values are weighted per lane row for all
    /// the run's heads, half a row (32 outputs) per pass. Other head sizes and the last
    /// `valid % 16` positions' dot products take the reference path. The softmax (scale,
    /// maximum, exponentials, sum, f16 rounding) runs sixteen lanes at a time, any head size.
    pub(super) struct Avx512Dots;

    impl Dots for Avx512Dots {
        #[inline(always)]
        fn dots<F: Fma>(
            order: SumOrder,
            shape: Shape,
            queries: &[f32],
            (keys, values): (&[u16], &[u16]),
            valid: usize,
            scores: &mut [f32],
        ) {
            if shape.head_dim != 64 {
                return PlainDots::dots::<F>(order, shape, queries, (keys, values), valid, scores);
            }
            let queries = queries.as_chunks::<64>().0;
            let blocks = keys[..valid * 64].as_chunks::<64>().0.as_chunks::<16>().0;
            // The weighted sum reads the values by lane rows, positions 64 apart, which the
            // hardware prefetchers do not follow (it waited on memory more than it computed):
            // each block's sixteen value rows are asked for in L2 as its keys are used, paced
            // so the requests overlap the arithmetic instead of filling the miss queues at once.
            let value_lines = values[..values.len().min(valid * 64)].chunks(32);
            let mut value_lines = value_lines.map(|line| line.as_ptr());
            for (block, block_keys) in blocks.iter().enumerate() {
                // The keys two blocks on, into L1 (a small further gain over the hardware
                // prefetchers, which each KV head's short stream barely trains).
                if let Some(next) = blocks.get(block + 2) {
                    for line in next.as_flattened().chunks(32) {
                        // SAFETY: an address inside `keys`; a prefetch reads nothing
                        // architecturally.
                        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
                    }
                }
                for line in value_lines.by_ref().take(32) {
                    // SAFETY: an address inside `values`; a prefetch reads nothing
                    // architecturally.
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(line.cast()) };
                }
                for run in head_runs(shape.heads) {
                    let (queries, at) = (&queries[run.clone()], (block * 16, shape.stride));
                    let scores = &mut scores[run.start * shape.stride..];
                    // SAFETY: only reached from `attend_avx512`, whose caller checked AVX-512F.
                    unsafe {
                        match run.len() {
                            1 => dots16_run::<1>(order, queries, block_keys, scores, at),
                            2 => dots16_run::<2>(order, queries, block_keys, scores, at),
                            _ => dots16_run::<MOST_SHARED>(order, queries, block_keys, scores, at),
                        }
                    }
                }
            }
            for line in value_lines {
                // SAFETY: as above.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(line.cast()) };
            }
            let whole = blocks.len() * 16;
            for (query, scores) in queries.iter().zip(scores.chunks_exact_mut(shape.stride)) {
                plain_dots::<F>(order, query, &keys[whole * 64..], &mut scores[whole..valid]);
            }
        }

        #[inline(always)]
        fn weighted_values<F: Fma>(
            order: SumOrder,
            shape: Shape,
            probs_f16: &[f32],
            values: &[u16],
            lengths: (usize, usize),
            scratch: (&mut [f32], &mut [f64]),
            out: &mut [f32],
        ) {
            if shape.head_dim != 64 {
                return PlainDots::weighted_values::<F>(
                    order, shape, probs_f16, values, lengths, scratch, out,
                );
            }
            let value_rows = values[..lengths.0 * 64].as_chunks::<64>().0;
            let outs = out.as_chunks_mut::<64>().0;
            for run in head_runs(shape.heads) {
                let probs = (&probs_f16[run.start * shape.stride..], shape.stride);
                let out = &mut outs[run];
                // SAFETY: only reached from `attend_avx512`, whose caller checked AVX-512F.
                unsafe {
                    match out.len() {
                        1 => weighted_run::<1>(order, probs, value_rows, lengths, out),
                        2 => weighted_run::<2>(order, probs, value_rows, lengths, out),
                        _ => weighted_run::<MOST_SHARED>(order, probs, value_rows, lengths, out),
                    }
                }
            }
        }

        #[inline(always)]
        fn probabilities<F: Fma>(
            scale: f32,
            (valid, n_kv): (usize, usize),
            scores: &mut [f32],
            probs: &mut [f32],
            probs_f16: &mut [f32],
        ) {
            // SAFETY: only reached from `attend_avx512`, whose caller checked AVX-512F.
            let max = unsafe { scaled_max(&mut scores[..valid], scale) };
            // SAFETY: as above.
            let sum = unsafe { wide16::softmax_exp(scores, valid, n_kv, max, probs) };
            let inverse = (1.0 / sum) as f32;
            // SAFETY: as above.
            unsafe { rounded_f16(&probs[..valid], inverse, &mut probs_f16[..valid]) };
        }
    }

    /// Sixteen lanes of `row` from `at`, the first `live` of them (at most 16; the rest +0,
    /// and not read).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `at + live <= row.len()`.
    #[inline(always)]
    unsafe fn load_live(row: &[f32], at: usize, live: usize) -> (__m512, __mmask16) {
        let mask = ((1u32 << live.min(16)) - 1) as __mmask16;
        // SAFETY: the masked lanes are neither read nor faulted on; the others lie in `row` by
        // the contract, as does `at` itself when `live > 0` (and no lane is read otherwise).
        // AVX-512F by the contract.
        unsafe {
            (
                _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_add(at)),
                mask,
            )
        }
    }

    /// The scores scaled in place (`w * scale`, as the reference) and their maximum, sixteen
    /// at a time with `vmaxps(w, max)`, which is `w > max ? w : max` per lane: a NaN score is
    /// skipped as the reference's `>` skips it, and the running maxima never hold a NaN, so
    /// the horizontal maximum has the reference's value. Only its sign can differ, when it is
    /// a zero and the row holds both zeros (each order keeps another of the equal zeros).
    /// That sign cannot change a bit of the softmax: the maximum only enters as `w - max`,
    /// which for a zero maximum is `w` whatever its sign unless `w` is a zero too, and then
    /// `±0 - ±0` is a zero whose exponential is exactly 1 in both `expf_ggml` and `expf` (the
    /// tests sweep ±0 and rows whose maximum is either zero).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn scaled_max(scores: &mut [f32], scale: f32) -> f32 {
        // SAFETY: every chunk lies in `scores` (the last one's live lanes too); AVX-512F by
        // the contract.
        unsafe {
            let scale = _mm512_set1_ps(scale);
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for at in (0..scores.len()).step_by(16) {
                let (w, mask) = load_live(scores, at, scores.len() - at);
                let w = _mm512_mul_ps(w, scale);
                _mm512_mask_storeu_ps(scores.as_mut_ptr().add(at), mask, w);
                max = _mm512_mask_max_ps(max, mask, w, max);
            }
            _mm512_reduce_max_ps(max)
        }
    }

    /// `out[i] = round_f16(probs[i] * inverse)` (nearest even), sixteen at a time.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn rounded_f16(probs: &[f32], inverse: f32, out: &mut [f32]) {
        let len = probs.len().min(out.len());
        // SAFETY: every chunk lies in both slices (the last one's live lanes too); AVX-512F
        // by the contract. The conversion rounds to nearest even, as `round_f16` does.
        unsafe {
            let inverse = _mm512_set1_ps(inverse);
            for at in (0..len).step_by(16) {
                let (p, mask) = load_live(probs, at, len - at);
                let half = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(p, inverse),
                );
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask, _mm512_cvtph_ps(half));
            }
        }
    }

    /// [`dots16_group`] for a run of `G` heads (`queries`, as [`head_runs`] makes them): head
    /// `h`'s sixteen products into `scores[h * stride + at..][..16]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn dots16_run<const G: usize>(
        order: SumOrder,
        queries: &[[f32; 64]],
        keys: &[[u16; 64]; 16],
        scores: &mut [f32],
        (at, stride): (usize, usize),
    ) {
        let Ok(queries) = <&[[f32; 64]; G]>::try_from(queries) else {
            return;
        };
        // SAFETY: AVX-512F by the contract.
        let dots = unsafe {
            match order {
                SumOrder::Decode => dots16_group::<G, false>(queries, keys),
                SumOrder::Batch => dots16_group::<G, true>(queries, keys),
            }
        };
        for (h, dots) in dots.into_iter().enumerate() {
            let Some(into) = scores[h * stride + at..].first_chunk_mut::<16>() else {
                return;
            };
            // SAFETY: `into` covers the 64 bytes written; AVX-512F by the contract.
            unsafe { _mm512_storeu_ps(into.as_mut_ptr(), dots) };
        }
    }

    /// The dot products of each of `G` queries (64 values) with 16 consecutive keys (64 f16
    /// bits each) in the batch order if `BATCH`, else in the decode order, lane `i` holding key
    /// `i`'s; each key is widened once for every head. The tree's levels are formed as soon as
    /// both their halves are ready ([`sums8`] and below), so few partial sums are live at once.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn dots16_group<const G: usize, const BATCH: bool>(
        queries: &[[f32; 64]; G],
        keys: &[[u16; 64]; 16],
    ) -> [__m512; G] {
        // SAFETY: AVX-512F by the contract; `queries` covers the 64-byte loads.
        unsafe {
            let mut q = [[_mm512_setzero_ps(); 4]; G];
            for (q, query) in q.iter_mut().zip(queries) {
                for (j, q) in q.iter_mut().enumerate() {
                    *q = _mm512_loadu_ps(quarter(query, j).as_ptr());
                }
            }
            let [first, second] = halves_of(keys);
            let mut r =
                joined::<Last, G>(sums8::<G, BATCH>(&q, first), sums8::<G, BATCH>(&q, second));
            // Lane 4j + t is position 4t + j: put back in order.
            let order_index =
                _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            for r in &mut r {
                *r = _mm512_permutexvar_ps(order_index, *r);
            }
            r
        }
    }

    /// The two halves of `2 N` rows.
    #[inline(always)]
    fn halves_of<T, const N: usize, const M: usize>(rows: &[T; M]) -> [&[T; N]; 2] {
        const { assert!(2 * N == M) };
        let (halves, _) = rows.as_chunks::<N>();
        [&halves[0], &halves[1]]
    }

    /// One level of the tree that sums each key's sixteen lane sums: `join(a, b)` adds the
    /// lanes the level brings together, from two registers at once (float addition commutes,
    /// so which operand a shuffle puts first does not change a bit).
    trait TreeLevel {
        /// # Safety
        /// The CPU must have AVX-512F.
        unsafe fn join(a: __m512, b: __m512) -> __m512;
    }

    /// Level 1, over 2 keys (lane i + 8 onto lane i): the first key's eight sums in the low
    /// half, the second's in the high half.
    struct EightApart;
    /// Level 2, over 4 keys (lane i + 4 onto lane i): 128-bit chunk j is position j.
    struct FourApart;
    /// Level 3, over 8 keys (lanes 0 + 2 and 1 + 3): chunk j holds positions j (lanes 0, 1)
    /// and 4 + j (lanes 2, 3).
    struct TwoApart;
    /// Level 4, over 16 keys ((0 + 2) + (1 + 3)): lane 4j + t is position 4t + j.
    struct Last;

    /// A level whose join adds the two shuffles `$shuffle::<$low>` and `$shuffle::<$high>` of
    /// its operands.
    macro_rules! tree_level {
        ($level:ident, $shuffle:ident, $low:literal, $high:literal) => {
            impl TreeLevel for $level {
                #[inline(always)]
                unsafe fn join(a: __m512, b: __m512) -> __m512 {
                    // SAFETY: AVX-512F by the contract.
                    unsafe { _mm512_add_ps($shuffle::<$low>(a, b), $shuffle::<$high>(a, b)) }
                }
            }
        };
    }
    tree_level!(
        EightApart,
        _mm512_shuffle_f32x4,
        0b01_00_01_00,
        0b11_10_11_10
    );
    tree_level!(
        FourApart,
        _mm512_shuffle_f32x4,
        0b10_00_10_00,
        0b11_01_11_01
    );
    tree_level!(TwoApart, _mm512_shuffle_ps, 0b01_00_01_00, 0b11_10_11_10);
    tree_level!(Last, _mm512_shuffle_ps, 0b10_00_10_00, 0b11_01_11_01);

    /// Level `L` of every head's tree: `a` and `b` are the heads' sums over the two halves of
    /// the level's keys.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn joined<L: TreeLevel, const G: usize>(
        mut a: [__m512; G],
        b: [__m512; G],
    ) -> [__m512; G] {
        for (a, b) in a.iter_mut().zip(b) {
            // SAFETY: AVX-512F by the contract.
            *a = unsafe { L::join(*a, b) };
        }
        a
    }

    /// Levels 1 to 3 of every head's tree over 8 keys.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn sums8<const G: usize, const BATCH: bool>(
        q: &[[__m512; 4]; G],
        keys: &[[u16; 64]; 8],
    ) -> [__m512; G] {
        let [first, second] = halves_of(keys);
        // SAFETY: AVX-512F by the contract.
        unsafe { joined::<TwoApart, G>(sums4::<G, BATCH>(q, first), sums4::<G, BATCH>(q, second)) }
    }

    /// Levels 1 and 2 of every head's tree over 4 keys.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn sums4<const G: usize, const BATCH: bool>(
        q: &[[__m512; 4]; G],
        keys: &[[u16; 64]; 4],
    ) -> [__m512; G] {
        let [first, second] = halves_of(keys);
        // SAFETY: AVX-512F by the contract.
        unsafe { joined::<FourApart, G>(sums2::<G, BATCH>(q, first), sums2::<G, BATCH>(q, second)) }
    }

    /// Level 1 of every head's tree over 2 keys.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn sums2<const G: usize, const BATCH: bool>(
        q: &[[__m512; 4]; G],
        keys: &[[u16; 64]; 2],
    ) -> [__m512; G] {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            joined::<EightApart, G>(
                lane_sums::<G, BATCH>(q, &keys[0]),
                lane_sums::<G, BATCH>(q, &keys[1]),
            )
        }
    }

    /// Per head, the 16 lane sums of one key's products with the query, in the batch order if
    /// `BATCH`, else in the decode order.
    /// Products of f16-rounded values are exact in f32, so the fused form is the reference's
    /// `0 + x * y` (and `acc + x * y`) to the bit.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn lane_sums<const G: usize, const BATCH: bool>(
        q: &[[__m512; 4]; G],
        key: &[u16; 64],
    ) -> [__m512; G] {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let zero = _mm512_setzero_ps();
            let mut sums = [zero; G];
            if BATCH {
                // ((0 + q0 k0) + q1 k1) + ...
                for j in 0..4 {
                    let k = widened16(quarter(key, j));
                    for (sum, q) in sums.iter_mut().zip(q) {
                        *sum = _mm512_fmadd_ps(q[j], k, *sum);
                    }
                }
            } else {
                // (a0 + a2) + (a1 + a3), a_j = 0 + q_j k_j.
                let (k0, k2) = (widened16(quarter(key, 0)), widened16(quarter(key, 2)));
                for (sum, q) in sums.iter_mut().zip(q) {
                    *sum = _mm512_add_ps(
                        _mm512_fmadd_ps(q[0], k0, zero),
                        _mm512_fmadd_ps(q[2], k2, zero),
                    );
                }
                let (k1, k3) = (widened16(quarter(key, 1)), widened16(quarter(key, 3)));
                for (sum, q) in sums.iter_mut().zip(q) {
                    let odd = _mm512_add_ps(
                        _mm512_fmadd_ps(q[1], k1, zero),
                        _mm512_fmadd_ps(q[3], k3, zero),
                    );
                    *sum = _mm512_add_ps(*sum, odd);
                }
            }
            sums
        }
    }

    /// [`weighted_group64`] for a run of `G` heads (`out`, as [`head_runs`] makes them), head
    /// `h`'s probabilities at `probs[h * stride..]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn weighted_run<const G: usize>(
        order: SumOrder,
        (probs, stride): (&[f32], usize),
        values: &[[u16; 64]],
        lengths: (usize, usize),
        out: &mut [[f32; 64]],
    ) {
        let Ok(out) = <&mut [[f32; 64]; G]>::try_from(out) else {
            return;
        };
        let mut rows: [&[f32]; G] = [&[]; G];
        for (h, row) in rows.iter_mut().enumerate() {
            *row = &probs[h * stride..][..lengths.0];
        }
        // SAFETY: AVX-512F by the contract.
        unsafe { weighted_group64::<G>(order, &rows, values, lengths, out) };
    }

    /// [`weighted_values_reference`](super::weighted_values_reference) for `G` heads of 64
    /// sharing the values (at least `valid` rows; each head's `probs`, `valid` of them): the
    /// same additions in the same order per head (products of f16 values are exact in f32, so
    /// a fused multiply-add is the reference's `acc + prob * v`). [`PASS`] quarters of the
    /// output at a time, so a lane row's accumulators for every head stay in registers (the
    /// sixteen combined rows wait in a small array for the tree); each sixteen values are
    /// widened once for all the heads.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn weighted_group64<const G: usize>(
        order: SumOrder,
        probs: &[&[f32]; G],
        values: &[[u16; 64]],
        (valid, n_kv): (usize, usize),
        out: &mut [[f32; 64]; G],
    ) {
        let batch_order = order == SumOrder::Batch && n_kv.is_multiple_of(16);
        let lanes = if batch_order { 16 } else { 64 };
        let vector_end = if batch_order { n_kv } else { n_kv / 64 * 64 };
        let summed = valid.min(vector_end);
        for pass in 0..4 / PASS {
            let lane = |r: usize| LaneRow {
                first: r,
                end: summed,
                step: lanes,
                pass,
            };
            // SAFETY: AVX-512F by the contract.
            unsafe {
                let mut rows = [[[_mm512_setzero_ps(); PASS]; G]; 16];
                for (l, row) in rows.iter_mut().enumerate() {
                    *row = if batch_order {
                        lane_row(probs, values, lane(l))
                    } else {
                        // Lane l of the reference's 16-lane accumulator k is lane row
                        // 16 k + l: (0 + 2) + (1 + 3).
                        added(
                            added(
                                lane_row(probs, values, lane(l)),
                                lane_row(probs, values, lane(32 + l)),
                            ),
                            added(
                                lane_row(probs, values, lane(16 + l)),
                                lane_row(probs, values, lane(48 + l)),
                            ),
                        )
                    };
                }
                // The 16-lane tree of `reduce16` across the rows: halves, quarters, then
                // (0 + 2) + (1 + 3), each sum formed as soon as its operands are (read from
                // the rows once, kept in registers).
                let half = |l: usize| added(rows[l], rows[l + 8]);
                let fourth = |l: usize| added(half(l), half(l + 4));
                let total = added(added(fourth(0), fourth(2)), added(fourth(1), fourth(3)));
                let quarters = pass * PASS..(pass + 1) * PASS;
                if batch_order {
                    for (out, total) in out.iter_mut().zip(total) {
                        let out = &mut out.as_chunks_mut::<16>().0[quarters.clone()];
                        for (out, total) in out.iter_mut().zip(total) {
                            _mm512_storeu_ps(out.as_mut_ptr(), total);
                        }
                    }
                    continue;
                }
                // Positions past the last whole 64 are added in f64, one after another.
                let mut tail = [[[_mm512_setzero_pd(); 2]; PASS]; G];
                for (tail, total) in tail.iter_mut().zip(total) {
                    for (tail, total) in tail.iter_mut().zip(total) {
                        *tail = widened_halves(total);
                    }
                }
                for p in vector_end..valid {
                    let v = pass_values(&values[p], pass);
                    for (tail, probs) in tail.iter_mut().zip(probs) {
                        let prob = _mm512_set1_ps(probs[p]);
                        for (tail, v) in tail.iter_mut().zip(v) {
                            let [low, high] = widened_halves(_mm512_mul_ps(prob, v));
                            tail[0] = _mm512_add_pd(tail[0], low);
                            tail[1] = _mm512_add_pd(tail[1], high);
                        }
                    }
                }
                for (out, tail) in out.iter_mut().zip(tail) {
                    let eighths = &mut out.as_chunks_mut::<8>().0[2 * quarters.start..];
                    for (eighth, sum) in eighths.iter_mut().zip(tail.as_flattened()) {
                        _mm256_storeu_ps(eighth.as_mut_ptr(), _mm512_cvtpd_ps(*sum));
                    }
                }
            }
        }
    }

    /// Output quarters (16 values each) one pass over the values sums: two, so a pass reads a
    /// 64-byte half of each value row, and a lane row's accumulators for three heads (six),
    /// two partial rows waiting to be added (twelve) and the widened values (two) fit the 32
    /// registers.
    const PASS: usize = 2;

    /// Per head, [`PASS`] quarters of the output (or of a partial sum of it).
    type Quarters<const G: usize> = [[__m512; PASS]; G];

    /// `a + b` for every head and quarter.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn added<const G: usize>(mut a: Quarters<G>, b: Quarters<G>) -> Quarters<G> {
        for (a, b) in a.iter_mut().zip(b) {
            for (a, b) in a.iter_mut().zip(b) {
                // SAFETY: AVX-512F by the contract.
                *a = unsafe { _mm512_add_ps(*a, b) };
            }
        }
        a
    }

    /// The quarters of a value row that pass `pass` sums, widened.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn pass_values(row: &[u16; 64], pass: usize) -> [__m512; PASS] {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let mut v = [_mm512_setzero_ps(); PASS];
            for (c, v) in v.iter_mut().enumerate() {
                *v = widened16(quarter(row, pass * PASS + c));
            }
            v
        }
    }

    /// Which positions and output quarters a lane row sums: `first, first + step, ... < end`,
    /// the quarters of pass `pass`.
    #[derive(Clone, Copy)]
    struct LaneRow {
        first: usize,
        end: usize,
        step: usize,
        pass: usize,
    }

    /// Per head, `prob * v` over a lane row's positions in order, from +0.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn lane_row<const G: usize>(
        probs: &[&[f32]; G],
        values: &[[u16; 64]],
        row: LaneRow,
    ) -> Quarters<G> {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); PASS]; G];
            for p in (row.first..row.end).step_by(row.step) {
                let v = pass_values(&values[p], row.pass);
                for (acc, probs) in acc.iter_mut().zip(probs) {
                    let prob = _mm512_set1_ps(probs[p]);
                    for (acc, v) in acc.iter_mut().zip(v) {
                        *acc = _mm512_fmadd_ps(prob, v, *acc);
                    }
                }
            }
            acc
        }
    }

    /// The sixteen f32 lanes as two vectors of eight f64 (exact).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn widened_halves(x: __m512) -> [__m512d; 2] {
        // SAFETY: AVX-512F by the contract.
        unsafe {
            let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x));
            [
                _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
                _mm512_cvtps_pd(_mm256_castpd_ps(high)),
            ]
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx512(
        order: SumOrder,
        queries: &[f32],
        keys: &[u16],
        values: &[u16],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma, Avx512Dots>(order, queries, keys, values, pos, n_kv, scratch, out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx2(
        order: SumOrder,
        queries: &[f32],
        keys: &[u16],
        values: &[u16],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma, PlainDots>(order, queries, keys, values, pos, n_kv, scratch, out)
    }
}

/// The group's attention at every level: queries rounded to f16, every head's dot products
/// (`D` may share key loads between heads), then per head the scale, maximum, softmax and
/// rounding of the probabilities, then every head's weighted values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_generic<F: super::math::Fma, D: Dots>(
    order: SumOrder,
    queries: &[f32],
    keys: &[u16],
    values: &[u16],
    pos: usize,
    n_kv: usize,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    let AttentionScratch {
        queries: rounded,
        scores,
        probs,
        probs_f16,
        partial,
        tail,
    } = scratch;
    let (head_dim, stride) = (tail.len(), probs.len());
    let shape = Shape {
        heads: queries.len() / head_dim,
        head_dim,
        stride,
    };
    let group = shape.heads * head_dim;
    let valid = pos + 1;
    for (q16, &q) in rounded.iter_mut().zip(queries) {
        *q16 = F::round_f16(q);
    }
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let (scores, probs_f16) = (
        &mut scores[..shape.heads * stride],
        &mut probs_f16[..shape.heads * stride],
    );
    D::dots::<F>(
        order,
        shape,
        &rounded[..group],
        (keys, values),
        valid,
        scores,
    );
    for (scores, probs_f16) in scores
        .chunks_exact_mut(stride)
        .zip(probs_f16.chunks_exact_mut(stride))
    {
        D::probabilities::<F>(scale, (valid, n_kv), scores, probs, probs_f16);
    }
    D::weighted_values::<F>(
        order,
        shape,
        probs_f16,
        values,
        (valid, n_kv),
        (partial, tail),
        &mut out[..group],
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
        let stride = 40;
        for seed in 0..20 {
            for heads in 1..=4 {
                let queries = f16_values(heads * 64, 100 + seed);
                let shape = Shape {
                    heads,
                    head_dim: 64,
                    stride,
                };
                for order in [SumOrder::Decode, SumOrder::Batch] {
                    for len in [16, 32, 37] {
                        let mut expected = alloc::vec![0.0f32; heads * stride];
                        let mut got = alloc::vec![f32::NAN; heads * stride];
                        PlainDots::dots::<SoftFma>(
                            order,
                            shape,
                            &queries,
                            (&keys, &keys),
                            len,
                            &mut expected,
                        );
                        wide::Avx512Dots::dots::<SoftFma>(
                            order,
                            shape,
                            &queries,
                            (&keys, &keys),
                            len,
                            &mut got,
                        );
                        for h in 0..heads {
                            let row = h * stride..h * stride + len;
                            for (p, (a, b)) in
                                expected[row.clone()].iter().zip(&got[row]).enumerate()
                            {
                                assert_eq!(
                                    a.to_bits(),
                                    b.to_bits(),
                                    "{order:?} {heads} heads, head {h} position {p}: {a} {b}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The AVX-512 scale, maximum, exponentials, sum and f16 rounding of one head equal the
    /// reference's bits at every `valid` (below 16, at and past multiples of 16) and `n_kv`
    /// past it, for rows of spread-out scores, a row whose maximum is a zero of either sign
    /// (and holds both zeros), and rows with NaN, infinite and huge scores.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_lane_probabilities_equal_the_reference() {
        if SimdLevel::detect() < SimdLevel::Avx512 {
            return;
        }
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
        fn wide_probabilities(
            scale: f32,
            lengths: (usize, usize),
            scores: &mut [f32],
            probs: &mut [f32],
            probs_f16: &mut [f32],
        ) {
            wide::Avx512Dots::probabilities::<crate::model::math::HardFma>(
                scale, lengths, scores, probs, probs_f16,
            )
        }
        const CAPACITY: usize = 100;
        let spread: alloc::vec::Vec<f32> = f16_values(CAPACITY, 31)
            .into_iter()
            .map(|v| v * 64.0)
            .collect();
        let mut zero_max: alloc::vec::Vec<f32> = spread.iter().map(|v| -v.abs() - 0.5).collect();
        for (at, zero) in [
            (3, -0.0),
            (9, 0.0),
            (17, 0.0),
            (40, -0.0),
            (41, 0.0),
            (80, -0.0),
        ] {
            zero_max[at] = zero;
        }
        let mut zero_max_flipped = zero_max.clone();
        for z in zero_max_flipped.iter_mut().filter(|z| **z == 0.0) {
            *z = -*z;
        }
        let mut outliers = spread.clone();
        outliers[2] = f32::NAN;
        outliers[20] = f32::NEG_INFINITY;
        outliers[33] = 1e30;
        outliers[34] = -1e30;
        let mut infinite = spread.clone();
        infinite[50] = f32::INFINITY;
        let rows = [spread, zero_max, zero_max_flipped, outliers, infinite];
        for (r, row) in rows.iter().enumerate() {
            for scale in [0.125, 1.0 / libm::sqrtf(48.0)] {
                for valid in 1..=CAPACITY {
                    let pads = [
                        valid,
                        valid.next_multiple_of(16),
                        valid.next_multiple_of(32),
                    ];
                    for n_kv in pads.into_iter().chain([CAPACITY]).map(|n| n.min(CAPACITY)) {
                        let mut want = (row.clone(), [0.0f32; CAPACITY], [0.0f32; CAPACITY]);
                        let mut got = (row.clone(), [f32::NAN; CAPACITY], [f32::NAN; CAPACITY]);
                        probabilities_reference::<SoftFma>(
                            scale,
                            (valid, n_kv),
                            &mut want.0,
                            &mut want.1,
                            &mut want.2,
                        );
                        // SAFETY: AVX-512 was detected above.
                        unsafe {
                            wide_probabilities(
                                scale,
                                (valid, n_kv),
                                &mut got.0,
                                &mut got.1,
                                &mut got.2,
                            )
                        };
                        let named = [
                            ("score", &want.0[..], &got.0[..]),
                            ("numerator", &want.1[..], &got.1[..]),
                            ("probability", &want.2[..], &got.2[..]),
                        ];
                        for (what, want, got) in named {
                            for (p, (a, b)) in want[..valid].iter().zip(&got[..valid]).enumerate() {
                                // Rust leaves the sign and payload of a NaN result unspecified
                                // (the reference's own vary with how it is inlined): a NaN only
                                // has to stay a NaN.
                                assert!(
                                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                                    "row {r} scale {scale} valid {valid} n_kv {n_kv}: {what} \
                                     {p}: {a:e} vs {b:e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn head_runs_cover_the_group_in_order_with_at_most_three_heads_each() {
        for heads in 0..=20 {
            let runs: alloc::vec::Vec<_> = wide::head_runs(heads).collect();
            let mut next = 0;
            for run in &runs {
                assert_eq!(run.start, next, "{heads} heads: {runs:?}");
                assert!(
                    (1..=wide::MOST_SHARED).contains(&run.len()),
                    "{heads}: {runs:?}"
                );
                next = run.end;
            }
            assert_eq!(next, heads);
            assert_eq!(runs.len(), heads.div_ceil(wide::MOST_SHARED));
        }
    }

    /// A group of heads with distinct queries, at every level, gives each head exactly what
    /// the scalar reference gives that head alone: a head that read another's query, scores or
    /// probabilities, or wrote into another's output, would differ (the heads' outputs are
    /// checked to differ from each other, so a swap cannot go unseen).
    #[test]
    fn a_group_attends_each_head_exactly_as_alone() {
        let levels: alloc::vec::Vec<SimdLevel> =
            [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
                .into_iter()
                .filter(|level| SimdLevel::detect() >= *level)
                .collect();
        // A context of 90 positions makes a batch step's `n_kv` 90 at the end, which takes the
        // decode order.
        for (head_dim, capacity) in [(64, 160), (64, 90), (48, 160)] {
            let keys = f16_bits(capacity * head_dim, 21);
            let values = f16_bits(capacity * head_dim, 22);
            for group in [1, 2, 3, 4, 7] {
                // Small queries, so the probabilities spread over many positions (a softmax
                // that picks one position would give heads the same output).
                let queries: alloc::vec::Vec<f32> = f16_values(group * head_dim, 23 + group as u64)
                    .into_iter()
                    .map(|q| q / 256.0)
                    .collect();
                let mut single = AttentionScratch::new(capacity, head_dim);
                let mut shared = AttentionScratch::for_group(capacity, head_dim, group);
                // Lengths below, at and past multiples of 16 and 64, and a full context.
                let lengths = [0, 14, 15, 16, 40, 63, 64, 65, 89, 100, 127, 128, 131, 159];
                for pos in lengths.into_iter().filter(|&pos| pos < capacity) {
                    let n_kv = padded_kv_len(pos, capacity);
                    for order in [SumOrder::Decode, SumOrder::Batch] {
                        let mut expected = alloc::vec![0.0f32; group * head_dim];
                        for (query, out) in queries
                            .chunks_exact(head_dim)
                            .zip(expected.chunks_exact_mut(head_dim))
                        {
                            attend(
                                SimdLevel::Scalar,
                                order,
                                query,
                                &keys,
                                &values,
                                pos,
                                n_kv,
                                &mut single,
                                out,
                            );
                        }
                        if group > 1 && pos > 0 {
                            let heads: alloc::vec::Vec<&[f32]> =
                                expected.chunks_exact(head_dim).collect();
                            for (h, head) in heads.iter().enumerate() {
                                assert!(
                                    heads[..h].iter().all(|other| other != head),
                                    "heads {h} and another agree: the test could not see a swap"
                                );
                            }
                        }
                        for &level in &levels {
                            let mut got = alloc::vec![f32::NAN; group * head_dim];
                            attend_group(
                                level,
                                order,
                                &queries,
                                &keys,
                                &values,
                                pos,
                                n_kv,
                                &mut shared,
                                &mut got,
                            );
                            for (d, (a, b)) in expected.iter().zip(&got).enumerate() {
                                assert_eq!(
                                    a.to_bits(),
                                    b.to_bits(),
                                    "{level:?} {order:?} head {head_dim} group {group} pos {pos}: \
                                     head {} element {}",
                                    d / head_dim,
                                    d % head_dim
                                );
                            }
                        }
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
            let positions = [
                (3, 0),
                (10, 5),
                (4, 14),
                (5, 15),
                (6, 16),
                (7, 33),
                (11, 40),
                (12, 47),
                (8, 63),
                (9, 89),
            ];
            for (seed, pos) in positions {
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
