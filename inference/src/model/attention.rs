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

use super::math::reduce16;
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

/// `Σ a[i] * b[i]` of exact products in the order of the given path (see the module docs).
#[inline(always)]
fn ordered_dot(order: SumOrder, a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    if order == SumOrder::Batch && len.is_multiple_of(16) {
        let mut acc = [0.0f32; 16];
        for start in (0..len).step_by(16) {
            let (x, y) = (lanes16(a, start), lanes16(b, start));
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
            let (x, y) = (lanes16(a, start + 16 * j), lanes16(b, start + 16 * j));
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
        sum += f64::from(a[i] * b[i]);
    }
    sum as f32
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

/// One query head at position `pos` over `keys`/`values` (`[position][head_dim]`, values already
/// rounded to f16, at least `pos + 1` positions) into `out` (`head_dim` values); `n_kv` from
/// [`padded_kv_len`]. The loops are the same at every level; the SIMD levels only let the
/// compiler use wider registers (the lane-wise arithmetic, and so every bit, is unchanged).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    level: SimdLevel,
    order: SumOrder,
    query: &[f32],
    keys: &[f32],
    values: &[f32],
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
    attend_generic::<super::math::SoftFma>(order, query, keys, values, pos, n_kv, scratch, out)
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{AttentionScratch, SumOrder, attend_generic};
    use crate::model::math::HardFma;

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx512(
        order: SumOrder,
        query: &[f32],
        keys: &[f32],
        values: &[f32],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma>(order, query, keys, values, pos, n_kv, scratch, out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub fn attend_avx2(
        order: SumOrder,
        query: &[f32],
        keys: &[f32],
        values: &[f32],
        pos: usize,
        n_kv: usize,
        scratch: &mut AttentionScratch,
        out: &mut [f32],
    ) {
        attend_generic::<HardFma>(order, query, keys, values, pos, n_kv, scratch, out)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_generic<F: super::math::Fma>(
    order: SumOrder,
    query: &[f32],
    keys: &[f32],
    values: &[f32],
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
    let mut max = f32::NEG_INFINITY;
    for p in 0..valid {
        let key = &keys[p * head_dim..(p + 1) * head_dim];
        let score = ordered_dot(order, &scratch.query, key);
        let w = score * scale;
        scratch.scores[p] = w;
        if w > max {
            max = w;
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
    // Output element d is Σ_p prob[p] * v[p][d] in the order above. Positions accumulate into
    // per-lane partial rows (lane = position mod 16 or 64), so every loop runs over d, which is
    // contiguous in the cache; the lanes are then combined row-wise in the same tree.
    let batch_order = order == SumOrder::Batch && n_kv.is_multiple_of(16);
    let lanes = if batch_order { 16 } else { 64 };
    let vector_end = if batch_order { n_kv } else { n_kv / 64 * 64 };
    let summed = valid.min(vector_end);
    // Lane row `r` (the accumulator lane position `p` lands in, `p % lanes`) is the sum of
    // `prob * v` over its positions in order, from +0; each is built in a scratch row just
    // before it is combined, so no `lanes x head_dim` buffer is written and read back.
    let (rows, combined) = scratch.partial.split_at_mut(64 * head_dim);
    let probs = &scratch.probs_f16;
    let lane_row = |r: usize, into: &mut [f32]| {
        into.fill(0.0);
        for p in (r..summed).step_by(lanes) {
            let prob = probs[p];
            for (acc, &v) in into
                .iter_mut()
                .zip(&values[p * head_dim..(p + 1) * head_dim])
            {
                *acc += prob * v;
            }
        }
    };
    let combined = &mut combined[..16 * head_dim];
    if batch_order {
        for (l, out) in combined.chunks_exact_mut(head_dim).enumerate() {
            lane_row(l, out);
        }
    } else {
        // Lane l of accumulator j is lane row 16 j + l: (0 + 2) + (1 + 3) per lane.
        let (a, rest) = rows.split_at_mut(head_dim);
        let (b, rest) = rest.split_at_mut(head_dim);
        let (c, rest) = rest.split_at_mut(head_dim);
        let d = &mut rest[..head_dim];
        for (l, out) in combined.chunks_exact_mut(head_dim).enumerate() {
            lane_row(l, a);
            lane_row(32 + l, b);
            lane_row(16 + l, c);
            lane_row(48 + l, d);
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
        let tail = &mut scratch.tail[..head_dim];
        for (d, t) in tail.iter_mut().enumerate() {
            let lane = |l: usize| combined[l * head_dim + d];
            *t = f64::from((lane(0) + lane(2)) + (lane(1) + lane(3)));
        }
        for p in vector_end..valid {
            let prob = scratch.probs_f16[p];
            for (t, &v) in tail
                .iter_mut()
                .zip(&values[p * head_dim..(p + 1) * head_dim])
            {
                *t += f64::from(prob * v);
            }
        }
        for (o, &t) in out.iter_mut().zip(tail.iter()) {
            *o = t as f32;
        }
    }
}
