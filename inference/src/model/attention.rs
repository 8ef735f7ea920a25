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

use super::math::{Math, reduce16};
use crate::quant::{f16_bits_to_f32, f32_to_f16_bits};

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

/// Sum of `len` exact products `term(i)` in the given order over a row of `len` elements.
#[inline(always)]
fn ordered_sum(order: SumOrder, len: usize, mut term: impl FnMut(usize) -> f32) -> f32 {
    if order == SumOrder::Batch && len.is_multiple_of(16) {
        let mut lanes = [0.0f32; 16];
        for start in (0..len).step_by(16) {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += term(start + l);
            }
        }
        return reduce16(&lanes);
    }
    let vector_end = len / 64 * 64;
    let mut acc = [[0.0f32; 16]; 4];
    for start in (0..vector_end).step_by(64) {
        for (j, lanes) in acc.iter_mut().enumerate() {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += term(start + 16 * j + l);
            }
        }
    }
    let combined: [f32; 16] =
        core::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let mut sum = f64::from(reduce16(&combined));
    for i in vector_end..len {
        sum += f64::from(term(i));
    }
    sum as f32
}

/// Scratch space for one head's attention, sized once for the context.
#[derive(Debug, Clone)]
pub struct AttentionScratch {
    query: alloc::vec::Vec<u16>,
    scores: alloc::vec::Vec<f32>,
    probs: alloc::vec::Vec<f32>,
    probs_f16: alloc::vec::Vec<f32>,
    /// Per-position-lane partial sums of the output, `[64][head_dim]`.
    partial: alloc::vec::Vec<f32>,
}

impl AttentionScratch {
    pub fn new(capacity: usize, head_dim: usize) -> Self {
        Self {
            query: alloc::vec![0; head_dim],
            scores: alloc::vec![0.0; capacity],
            probs: alloc::vec![0.0; capacity],
            probs_f16: alloc::vec![0.0; capacity],
            partial: alloc::vec![0.0; 64 * head_dim],
        }
    }
}

/// One query head at position `pos` over `keys`/`values` (`[position][head_dim]` f16 bits, at
/// least `pos + 1` positions) into `out` (`head_dim` values); `n_kv` from [`padded_kv_len`].
#[allow(clippy::too_many_arguments)]
pub fn attend(
    math: &Math,
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
        *q16 = f32_to_f16_bits(q);
    }
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let mut max = f32::NEG_INFINITY;
    for p in 0..valid {
        let key = &keys[p * head_dim..(p + 1) * head_dim];
        let q = &scratch.query;
        let score = ordered_sum(order, head_dim, |i| {
            f16_bits_to_f32(q[i]) * f16_bits_to_f32(key[i])
        });
        let w = score * scale;
        scratch.scores[p] = w;
        if w > max {
            max = w;
        }
    }
    let sum = math.softmax_exp(&scratch.scores, valid, n_kv, max, &mut scratch.probs);
    let inverse = (1.0 / sum) as f32;
    for p in 0..valid {
        scratch.probs_f16[p] = f16_bits_to_f32(f32_to_f16_bits(scratch.probs[p] * inverse));
    }
    // Output element d is Σ_p prob[p] * v[p][d] in the order above; positions are accumulated
    // into per-lane partial rows so the inner loop runs over d (contiguous in the cache).
    let batch_order = order == SumOrder::Batch && n_kv.is_multiple_of(16);
    let lanes = if batch_order { 16 } else { 64 };
    let vector_end = if batch_order { n_kv } else { n_kv / 64 * 64 };
    let partial = &mut scratch.partial[..lanes * head_dim];
    partial.fill(0.0);
    for p in 0..valid.min(vector_end) {
        let prob = scratch.probs_f16[p];
        let row = &mut partial[(p % lanes) * head_dim..][..head_dim];
        for (acc, &v) in row
            .iter_mut()
            .zip(&values[p * head_dim..(p + 1) * head_dim])
        {
            *acc += prob * f16_bits_to_f32(v);
        }
    }
    for (d, o) in out.iter_mut().enumerate().take(head_dim) {
        let lane = |l: usize| partial[l * head_dim + d];
        let value = if batch_order {
            reduce16(&core::array::from_fn(lane))
        } else {
            let combined: [f32; 16] =
                core::array::from_fn(|l| (lane(l) + lane(32 + l)) + (lane(16 + l) + lane(48 + l)));
            let mut sum = f64::from(reduce16(&combined));
            for p in vector_end..valid {
                sum += f64::from(scratch.probs_f16[p] * f16_bits_to_f32(values[p * head_dim + d]));
            }
            sum as f32
        };
        *o = value;
    }
}
