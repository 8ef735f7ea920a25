//! What a batcher costs in memory, computed before it is allocated, so a caller with a bounded
//! heap (the enclave) can refuse a configuration that would not fit instead of failing an
//! allocation later. The figures follow what [`Batcher::new`](super::Batcher::new) and the
//! model's buffers allocate:
//! - per slot: the KV cache (keys and values, f16, `layers × kv_dim × capacity` each), the
//!   context's one-row buffers, attention scratch and logits, the token history, and the
//!   sampler's candidate and probability buffers (grown to the vocabulary at the first sample);
//! - shared: the batch scratch for `slots × prefill_chunk` rows — per-row activations of every
//!   layer step, their 8-bit quantized copies, the product staging buffer — plus one logits row
//!   and one attention scratch per slot.
//!
//! The kernel's `tests/slot_memory.rs` checks these figures against what the batcher really
//! allocates, so a change of the buffers shows up there.

use super::BatcherConfig;
use crate::cpu::SimdLevel;
use crate::model::{LlamaConfig, Span};
use crate::quant::ActivationBlock;
use core::mem::size_of;

const F32: u64 = size_of::<f32>() as u64;
/// The KV cache holds f16 values (their bits).
const F16: u64 = size_of::<u16>() as u64;
/// Elements per quantized activation block.
const BLOCK: u64 = 32;
/// Attention keeps this many partial head outputs (`model::attention::AttentionScratch`).
const ATTENTION_PARTIALS: u64 = 80;
/// At most this many bytes per activation block in the spread form the AVX-512 kernels keep
/// (`kernels::spread`, private there and reshaped as those kernels are tuned: 192 or 256 bytes
/// of spread quants and offsets so far).
const SPREAD_BLOCK: u64 = 256;
/// Rows sharing one line of per-block terms in the spread form.
const MINIMUM_GROUP: u64 = 8;
/// At most this many bytes of terms per [`MINIMUM_GROUP`] rows and block column (64 or 128 so
/// far).
const TERMS_LINE: u64 = 128;

/// Bytes the batcher allocates for a model and a batcher configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherMemory {
    /// Slots.
    pub slots: u64,
    /// Positions per slot.
    pub capacity: u64,
    /// One slot's KV cache.
    pub kv_cache: u64,
    /// One slot's other buffers (context rows, attention scratch, logits, history, sampler).
    pub slot_buffers: u64,
    /// The batch scratch shared by all slots.
    pub shared: u64,
    /// The largest single buffer: a free block at least this long must exist, so the check
    /// adds it as a margin against the heap's fragmentation.
    pub largest_buffer: u64,
}

impl BatcherMemory {
    /// Computes the sizes (saturating: absurd hyper-parameters give a huge, refused figure).
    pub fn of(model: &LlamaConfig, batcher: &BatcherConfig) -> Self {
        let c = Dims::of(model);
        let slots = batcher.slots.max(1) as u64;
        let capacity = batcher.capacity.max(1) as u64;
        let chunk = batcher.prefill_chunk.max(1) as u64;
        let rows = slots.saturating_mul(chunk);

        let kv_half = c
            .layers
            .saturating_mul(c.kv)
            .saturating_mul(capacity)
            .saturating_mul(F16);
        let sampler = c.vocab.saturating_mul(size_of::<(u32, f32)>() as u64 + F32);
        let slot_buffers = row_buffers(&c, 1, 0)
            .saturating_add(activations(1, c.dim))
            .saturating_add(c.head / 2 * size_of::<(f32, f32)>() as u64)
            .saturating_add(attention_scratch(capacity, c.head))
            .saturating_add(c.vocab.saturating_mul(F32))
            .saturating_add(
                capacity
                    .saturating_add(1)
                    .saturating_mul(size_of::<u32>() as u64),
            )
            .saturating_add(sampler);

        let staging = rows
            .saturating_mul(c.widest_run)
            .max(slots.saturating_mul(c.vocab));
        let shared = row_buffers(&c, rows, staging)
            .saturating_add(activations(slots, c.dim))
            .saturating_add(
                rows.saturating_mul(c.head / 2)
                    .saturating_mul(size_of::<(f32, f32)>() as u64),
            )
            .saturating_add(slots.saturating_mul(attention_scratch(capacity, c.head)))
            .saturating_add(slots.saturating_mul(c.vocab).saturating_mul(F32))
            .saturating_add(rows.saturating_mul(size_of::<u32>() as u64))
            .saturating_add(slots * size_of::<Span>() as u64);
        let largest_buffer = kv_half
            .max(staging.saturating_mul(F32))
            .max(rows.saturating_mul(c.ffn).saturating_mul(F32));
        Self {
            slots,
            capacity,
            kv_cache: kv_half.saturating_mul(2),
            slot_buffers,
            shared,
            largest_buffer,
        }
    }

    /// Everything the batcher allocates.
    pub fn total(&self) -> u64 {
        self.kv_cache
            .saturating_add(self.slot_buffers)
            .saturating_mul(self.slots)
            .saturating_add(self.shared)
    }
}

/// The hyper-parameters the sizes depend on, as `u64`.
struct Dims {
    layers: u64,
    dim: u64,
    q: u64,
    kv: u64,
    ffn: u64,
    head: u64,
    vocab: u64,
    /// The widest run of products per row (Q/K/V together, gate/up together, or `dim`).
    widest_run: u64,
}

impl Dims {
    fn of(c: &LlamaConfig) -> Self {
        let (q, kv, ffn, dim) = (
            c.q_dim() as u64,
            c.kv_dim() as u64,
            c.ffn_dim as u64,
            c.dim as u64,
        );
        Self {
            layers: c.n_layers as u64,
            dim,
            q,
            kv,
            ffn,
            head: c.head_dim as u64,
            vocab: c.vocab_size as u64,
            widest_run: (q + 2 * kv).max(2 * ffn).max(dim),
        }
    }
}

/// A buffer of `len` f32 in whole 64-byte lines.
fn aligned_f32(len: u64) -> u64 {
    len.saturating_mul(F32)
        .checked_next_multiple_of(64)
        .unwrap_or(u64::MAX)
}

/// `Activations` for `rows` vectors of `cols`: the floats and their quantized blocks, and on a
/// CPU with AVX-512 the blocks' spread copy for its kernels (at most [`SPREAD_BLOCK`] each, for
/// rows rounded up to whole groups of [`MINIMUM_GROUP`]) with at most [`TERMS_LINE`] of terms
/// per group and block column.
fn activations(rows: u64, cols: u64) -> u64 {
    let elements = rows.saturating_mul(cols);
    if !cols.is_multiple_of(BLOCK) {
        return aligned_f32(elements);
    }
    let blocks = elements / BLOCK;
    let spread = if SimdLevel::Avx512.is_supported() {
        // The spread form may be kept for whole groups of rows.
        let groups = rows.div_ceil(MINIMUM_GROUP).saturating_mul(cols / BLOCK);
        groups.saturating_mul(MINIMUM_GROUP * SPREAD_BLOCK + TERMS_LINE)
    } else {
        0
    };
    aligned_f32(elements)
        .saturating_add(blocks.saturating_mul(size_of::<ActivationBlock>() as u64))
        .saturating_add(spread)
}

/// The per-row buffers of a forward step for `rows` rows, with `staging` f32 of staging.
fn row_buffers(c: &Dims, rows: u64, staging: u64) -> u64 {
    let per_row = [
        c.dim, c.dim, c.q, c.kv, c.kv, c.q, c.dim, c.ffn, c.ffn, c.ffn,
    ];
    per_row
        .iter()
        .map(|&cols| aligned_f32(rows.saturating_mul(cols)))
        .fold(0u64, u64::saturating_add)
        .saturating_add(activations(rows, c.dim))
        .saturating_add(activations(rows, c.q))
        .saturating_add(activations(rows, c.ffn))
        .saturating_add(staging.saturating_mul(F32))
}

/// Attention scratch for `capacity` positions: query, scores, probabilities (f32 and f16
/// rounded), partial outputs, the summed tail.
fn attention_scratch(capacity: u64, head: u64) -> u64 {
    capacity
        .saturating_mul(3)
        .saturating_add((2 + ATTENTION_PARTIALS) * head)
        .saturating_mul(F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    /// SmolLM2-135M's hyper-parameters.
    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            n_layers: 30,
            dim: 576,
            ffn_dim: 1536,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            vocab_size: 49152,
            context_length: 8192,
            rms_eps: 1e-5,
            rope_freq_base: 100_000.0,
            has_output: false,
        }
    }

    fn batcher(slots: usize, capacity: usize) -> BatcherConfig {
        BatcherConfig {
            slots,
            capacity,
            prefill_chunk: 512,
        }
    }

    #[test]
    fn kv_cache_is_keys_and_values_in_f16() {
        let memory = BatcherMemory::of(&smollm2(), &batcher(1, 1024));
        // 30 layers × 3 KV heads × 64 × 1024 positions × 2 bytes, keys and values.
        assert_eq!(memory.kv_cache, 30 * 192 * 1024 * 2 * 2);
        assert_eq!(memory.kv_cache, 45 * MIB / 2);
    }

    #[test]
    fn slots_scale_the_per_slot_part_and_the_batch_rows() {
        let one = BatcherMemory::of(&smollm2(), &batcher(1, 1024));
        let eight = BatcherMemory::of(&smollm2(), &batcher(8, 1024));
        assert_eq!(eight.kv_cache, one.kv_cache);
        assert_eq!(eight.slot_buffers, one.slot_buffers);
        // The batch scratch holds a prefill chunk of rows per slot: close to 8 times as big.
        assert!(eight.shared > 7 * one.shared && eight.shared < 9 * one.shared);
        assert_eq!(
            eight.total() - one.total(),
            7 * (one.kv_cache + one.slot_buffers) + (eight.shared - one.shared)
        );
        // SmolLM2 with 8 slots of 1024 positions: 180 MiB of KV cache plus the batch rows —
        // 4096 of them (8 prefill chunks of 512) at ~59 KiB each (f32 buffers of every layer
        // step, their 8-bit copies, the product staging), up to ~90 MiB more with AVX-512's
        // spread activations.
        let total_mib = eight.total() / MIB;
        let expected = if SimdLevel::Avx512.is_supported() {
            475..520
        } else {
            410..430
        };
        assert!(expected.contains(&total_mib), "{total_mib} MiB");
    }

    #[test]
    fn absurd_dimensions_saturate_instead_of_overflowing() {
        let config = LlamaConfig {
            n_layers: usize::MAX / 2,
            dim: usize::MAX / 4,
            ffn_dim: usize::MAX / 4,
            vocab_size: usize::MAX / 2,
            ..smollm2()
        };
        let memory = BatcherMemory::of(&config, &batcher(64, usize::MAX));
        assert_eq!(memory.total(), u64::MAX);
    }
}
