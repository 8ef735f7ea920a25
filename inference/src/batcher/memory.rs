//! What a batcher costs in memory, computed before it is allocated, so a caller with a bounded
//! heap (the enclave) can refuse a configuration that would not fit instead of failing an
//! allocation later. Every buffer that [`Batcher::new`](super::Batcher::new) and the model's
//! constructors allocate is counted once, by name, beside the constructor that allocates it:
//! - per slot: the KV cache (`Context::new`), the context's one-row step buffers with their own
//!   product staging (`RowBuffers::new` for one row), its attention scratch and logits, the
//!   slot's token history and its sampler's buffers (grown at the first non-greedy sample);
//! - shared: the batch scratch for `slots × prefill_chunk` rows (`Model::new_batch_scratch`:
//!   `RowBuffers::new` for every row, one attention scratch per slot) and the batcher's lists.
//!
//! The kernel's `tests/slot_memory.rs` checks these figures against what the batcher really
//! allocates, so a change of the buffers shows up there.

use super::{BatcherConfig, Emitted, Slot};
use crate::cpu::SimdLevel;
use crate::model::{Context, LlamaConfig, Span};
use crate::quant::ActivationBlock;
use crate::sampler::SamplerError;
use alloc::vec::Vec;
use core::mem::size_of;

const F32: u64 = size_of::<f32>() as u64;
/// The KV cache holds f16 values (their bits).
const F16: u64 = size_of::<u16>() as u64;
/// Elements per quantized activation block.
const BLOCK: u64 = 32;
/// Rows of partial head outputs attention keeps (`model::attention::AttentionScratch`).
const ATTENTION_PARTIALS: u64 = 80;
/// The vectors `model::attention::AttentionScratch` holds (its size, for the batch scratch's
/// list of them; the type is private to the model).
const ATTENTION_SCRATCH_VECS: u64 = 6;
/// Bytes of one activation block spread for the AVX-512 kernels (`kernels::spread::SpreadBlock`,
/// private there: 64 + 64 bytes of quants, 2 × 16 i32 offsets).
const SPREAD_BLOCK: u64 = 256;
/// Rows sharing one line of per-block terms in the spread form (`kernels::spread`).
const MINIMUM_GROUP: u64 = 8;
/// Bytes of terms per [`MINIMUM_GROUP`] rows and block column (`kernels::spread::BlockTerms`:
/// 16 + 8 + 8 f32, in a 64-byte aligned type).
const TERMS_LINE: u64 = 128;
/// A sampler candidate: token id and logit (`sampler::Candidate`, private there).
const CANDIDATE: u64 = (size_of::<u32>() + size_of::<f32>()) as u64;

/// Bytes the batcher allocates for a model and a batcher configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherMemory {
    /// Slots.
    pub slots: u64,
    /// Positions per slot.
    pub capacity: u64,
    /// One slot's KV cache.
    pub kv_cache: u64,
    /// One slot's other buffers (context step buffers and staging, attention scratch, logits,
    /// history, sampler).
    pub slot_buffers: u64,
    /// The batch scratch shared by all slots, and the batcher's per-step lists.
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
        // `Batcher::new`: the batch scratch holds a prefill chunk for every slot.
        let rows = slots.saturating_mul(chunk);
        // `Model::new_batch_scratch`: the staging holds the widest run of products of every
        // row, or every span's logits row.
        let batch_staging = rows
            .saturating_mul(c.widest_run)
            .max(slots.saturating_mul(c.vocab));

        // `Context::new`: keys, or values.
        let kv_half = c
            .layers
            .saturating_mul(c.kv)
            .saturating_mul(capacity)
            .saturating_mul(F16);
        let slot_buffers = context_buffers(&c, capacity).saturating_add(slot_state(&c, capacity));
        let shared = batch_scratch(&c, rows, slots, capacity, batch_staging)
            .saturating_add(batcher_lists(rows, slots));
        let largest_buffer = kv_half
            .max(batch_staging.saturating_mul(F32))
            .max(largest_row_buffer(&c, rows));
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
    /// Query heads per KV head: the attention scratch holds a group's rows.
    group: u64,
    vocab: u64,
    /// The widest run of products per row (Q/K/V together, gate/up together, or `dim`):
    /// `model::layer::widest_run`.
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
            group: c.n_heads.checked_div(c.n_kv_heads).unwrap_or(1) as u64,
            vocab: c.vocab_size as u64,
            widest_run: (q.saturating_add(kv.saturating_mul(2)))
                .max(ffn.saturating_mul(2))
                .max(dim),
        }
    }
}

/// `Context::new` with one row per step (as `Batcher::new` makes them), but its KV cache.
fn context_buffers(c: &Dims, capacity: u64) -> u64 {
    // rows: the step buffers, whose staging holds one row's widest run (`staging_len(1, ..)`).
    row_buffers(c, 1, c.widest_run)
        // act_out
        .saturating_add(activations(1, c.dim))
        // angles
        .saturating_add(angles(1, c.head))
        // scratch
        .saturating_add(attention_scratch(capacity, c.head, c.group))
        // logits
        .saturating_add(c.vocab.saturating_mul(F32))
}

/// A batcher `Slot` besides its context: the token history (`Vec::with_capacity(capacity +
/// 1)`) and the sampler's buffers, which a non-greedy sample grows by doubling — the candidates
/// and their probabilities to at most the vocabulary rounded up to a power of two, the
/// penalties' window (at most the history) to at most twice its longest length.
fn slot_state(c: &Dims, capacity: u64) -> u64 {
    let history = capacity
        .saturating_add(1)
        .saturating_mul(size_of::<u32>() as u64);
    let grown_vocab = c.vocab.checked_next_power_of_two().unwrap_or(u64::MAX);
    let candidates = grown_vocab.saturating_mul(CANDIDATE);
    let probabilities = grown_vocab.saturating_mul(F32);
    let recent = history.saturating_mul(2);
    history
        .saturating_add(candidates)
        .saturating_add(probabilities)
        .saturating_add(recent)
}

/// `Model::new_batch_scratch` for `rows` rows of up to `spans` spans, with `staging` f32 of
/// product staging.
fn batch_scratch(c: &Dims, rows: u64, spans: u64, capacity: u64, staging: u64) -> u64 {
    let one_attention = attention_scratch(capacity, c.head, c.group)
        .saturating_add(ATTENTION_SCRATCH_VECS.saturating_mul(size_of::<Vec<f32>>() as u64));
    // rows
    row_buffers(c, rows, staging)
        // act_out: one vector per span
        .saturating_add(activations(spans, c.dim))
        // angles
        .saturating_add(angles(rows, c.head))
        // attention: one scratch per span
        .saturating_add(spans.saturating_mul(one_attention))
}

/// The lists `Batcher::new` allocates besides the slots' contents: the contexts and slots
/// themselves, the step's tokens, spans, sampled tokens and emitted tokens.
fn batcher_lists(rows: u64, slots: u64) -> u64 {
    let per_slot = size_of::<Context>()
        + size_of::<Slot>()
        + size_of::<Span>()
        + size_of::<Option<Result<u32, SamplerError>>>()
        + size_of::<Emitted>();
    slots
        .saturating_mul(per_slot as u64)
        .saturating_add(rows.saturating_mul(size_of::<u32>() as u64))
}

/// A buffer of `len` f32 in whole 64-byte lines (`AlignedF32::zeroed`).
fn aligned_f32(len: u64) -> u64 {
    len.saturating_mul(F32)
        .checked_next_multiple_of(64)
        .unwrap_or(u64::MAX)
}

/// Rotation angles (`(sin, cos)` pairs) for `rows` rows.
fn angles(rows: u64, head: u64) -> u64 {
    rows.saturating_mul(head / 2)
        .saturating_mul(size_of::<(f32, f32)>() as u64)
}

/// `Activations::with_level` for `rows` vectors of `cols`: the floats and their quantized
/// blocks, and on a CPU with AVX-512 (whatever the level) the blocks' spread copy for its
/// kernels, for rows rounded up to whole groups of [`MINIMUM_GROUP`], with one line of terms per
/// group and block column.
fn activations(rows: u64, cols: u64) -> u64 {
    let elements = rows.saturating_mul(cols);
    if !cols.is_multiple_of(BLOCK) {
        return aligned_f32(elements);
    }
    let blocks = elements / BLOCK;
    let (spread, terms) = spread_parts(rows, cols);
    aligned_f32(elements)
        .saturating_add(blocks.saturating_mul(size_of::<ActivationBlock>() as u64))
        .saturating_add(spread)
        .saturating_add(terms)
}

/// The bytes of the spread blocks and of their terms that `Activations` keeps for `rows` vectors
/// of `cols` (a multiple of [`BLOCK`]); none without AVX-512.
fn spread_parts(rows: u64, cols: u64) -> (u64, u64) {
    if !SimdLevel::Avx512.is_supported() {
        return (0, 0);
    }
    let group_blocks = rows.div_ceil(MINIMUM_GROUP).saturating_mul(cols / BLOCK);
    (
        group_blocks.saturating_mul(MINIMUM_GROUP * SPREAD_BLOCK),
        group_blocks.saturating_mul(TERMS_LINE),
    )
}

/// `RowBuffers::new` for `rows` rows with `staging` f32 of staging.
fn row_buffers(c: &Dims, rows: u64, staging: u64) -> u64 {
    // x, q, k, v, att, gate, up
    let per_row = [c.dim, c.q, c.kv, c.kv, c.q, c.ffn, c.ffn];
    per_row
        .iter()
        .map(|&cols| aligned_f32(rows.saturating_mul(cols)))
        .fold(0u64, u64::saturating_add)
        // act_dim, act_q, act_ffn
        .saturating_add(activations(rows, c.dim))
        .saturating_add(activations(rows, c.q))
        .saturating_add(activations(rows, c.ffn))
        // staging
        .saturating_add(staging.saturating_mul(F32))
        // sums: the residual products' outputs
        .saturating_add(rows.saturating_mul(c.dim).saturating_mul(F32))
}

/// The largest single allocation among `RowBuffers::new`'s for `rows` rows, but the staging
/// (counted by the caller): the widest f32 rows or the widest activations' spread blocks.
fn largest_row_buffer(c: &Dims, rows: u64) -> u64 {
    let widest = c.dim.max(c.q).max(c.ffn);
    let floats = aligned_f32(rows.saturating_mul(widest));
    let spread = if widest.is_multiple_of(BLOCK) {
        spread_parts(rows, widest).0
    } else {
        0
    };
    floats.max(spread)
}

/// `model::attention::AttentionScratch::for_group(capacity, head, group)`: the group's queries,
/// its scores and f16-rounded probabilities, one head's probabilities, one head's partial
/// outputs, and the f64 tail.
fn attention_scratch(capacity: u64, head: u64, group: u64) -> u64 {
    let f32s = capacity
        .saturating_mul(group.saturating_mul(2).saturating_add(1))
        .saturating_add(
            group
                .saturating_add(ATTENTION_PARTIALS)
                .saturating_mul(head),
        );
    f32s.saturating_mul(F32)
        .saturating_add(head.saturating_mul(size_of::<f64>() as u64))
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
        // 4096 of them (8 prefill chunks of 512) at ~51 KiB each (f32 buffers of every layer
        // step, their 8-bit copies, the product staging and the residual sums), ~73 KiB with
        // AVX-512's spread activations — and ~1.2 MiB per slot besides its cache.
        let total_mib = eight.total() / MIB;
        let expected = if SimdLevel::Avx512.is_supported() {
            478..486
        } else {
            386..395
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
