//! Fixed-slot continuous batching: `S` slots, each with its own [`Context`] (KV cache) and
//! sampler, allocated once. Each [`Batcher::step`] gathers every busy slot's next input — a
//! bounded chunk of its prompt while it is in prefill, its last sampled token while it decodes —
//! into one [`Model::forward_batch`] pass (each weight matrix read once for all rows), then
//! samples one token for every slot whose input reached the end of its prompt.
//!
//! A slot's tokens are identical to running its request alone with `forward` chunked the same
//! way (`max_batch` = the prefill chunk) and the same sampler seed: see `model::batch`.
//! Finished requests are released with [`Batcher::release`], which zeroes the slot's cache.
//! Nothing is allocated on the step path once every slot has served one request.

mod memory;

pub use memory::BatcherMemory;

use crate::model::{BatchScratch, Context, Model, ModelError, Span};
use crate::parallel::{Disjoint, Executor};
use crate::sampler::{Sampler, SamplerConfig, SamplerError};
use alloc::vec::Vec;
use core::fmt;

/// Sizes fixed when the batcher is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Concurrent requests.
    pub slots: usize,
    /// Positions per slot (prompt plus generated tokens).
    pub capacity: usize,
    /// Most prompt tokens one slot feeds per step, so a long prompt does not stall the slots
    /// that are decoding.
    pub prefill_chunk: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            slots: 8,
            capacity: 2048,
            prefill_chunk: 64,
        }
    }
}

/// A slot's number: `0..slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub usize);

#[derive(Debug, Clone, PartialEq)]
pub enum BatcherError {
    /// Every slot is busy.
    NoFreeSlot,
    /// The prompt is empty, or prompt plus `max_tokens` exceed a slot's capacity.
    DoesNotFit {
        prompt: usize,
        max_tokens: usize,
        capacity: usize,
    },
    /// The slot is not busy.
    NotBusy(SlotId),
    Model(ModelError),
    Sampler(SamplerError),
}

impl fmt::Display for BatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFreeSlot => write!(f, "every slot is busy"),
            Self::DoesNotFit {
                prompt,
                max_tokens,
                capacity,
            } => write!(
                f,
                "a prompt of {prompt} tokens plus {max_tokens} new ones does not fit a slot of \
                 {capacity} positions (or the prompt is empty)"
            ),
            Self::NotBusy(slot) => write!(f, "slot {} has no request", slot.0),
            Self::Model(error) => write!(f, "model: {error}"),
            Self::Sampler(error) => write!(f, "sampler: {error}"),
        }
    }
}

impl core::error::Error for BatcherError {}

impl From<ModelError> for BatcherError {
    fn from(error: ModelError) -> Self {
        Self::Model(error)
    }
}

impl From<SamplerError> for BatcherError {
    fn from(error: SamplerError) -> Self {
        Self::Sampler(error)
    }
}

/// A token sampled in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub slot: SlotId,
    pub token: u32,
    /// The request has produced its `max_tokens` tokens: release the slot.
    pub last: bool,
}

#[derive(Debug)]
struct Slot {
    busy: bool,
    /// Prompt then generated tokens (the sampler's history); capacity reserved once.
    history: Vec<u32>,
    prompt_len: usize,
    /// Tokens of `history` already in the context.
    fed: usize,
    generated: usize,
    max_tokens: usize,
    sampler: Sampler,
}

impl Slot {
    fn done(&self) -> bool {
        self.generated >= self.max_tokens
    }
}

/// See the module documentation.
pub struct Batcher {
    config: BatcherConfig,
    contexts: Vec<Context>,
    slots: Vec<Slot>,
    scratch: BatchScratch,
    tokens: Vec<u32>,
    spans: Vec<Span>,
    /// Each span's sampled token (or error) in the current step.
    sampled: Vec<Option<Result<u32, SamplerError>>>,
    emitted: Vec<Emitted>,
}

impl Batcher {
    /// Allocates every slot's context and the batch scratch.
    pub fn new(model: &Model, config: BatcherConfig) -> Self {
        let config = BatcherConfig {
            slots: config.slots.max(1),
            capacity: config.capacity.max(1),
            prefill_chunk: config.prefill_chunk.max(1),
        };
        let max_rows = config.slots * config.prefill_chunk;
        Self {
            contexts: (0..config.slots)
                .map(|_| model.new_context(config.capacity, 1))
                .collect(),
            slots: (0..config.slots)
                .map(|_| Slot {
                    busy: false,
                    history: Vec::with_capacity(config.capacity + 1),
                    prompt_len: 0,
                    fed: 0,
                    generated: 0,
                    max_tokens: 0,
                    sampler: Sampler::new(SamplerConfig::greedy()),
                })
                .collect(),
            scratch: model.new_batch_scratch(max_rows, config.slots, config.capacity),
            tokens: Vec::with_capacity(max_rows),
            spans: Vec::with_capacity(config.slots),
            sampled: Vec::with_capacity(config.slots),
            emitted: Vec::with_capacity(config.slots),
            config,
        }
    }

    pub fn config(&self) -> BatcherConfig {
        self.config
    }

    /// Slots with a request.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// The logits of `slot`'s last step, as its sampler left them (penalties apply in place).
    pub fn logits(&self, slot: SlotId) -> &[f32] {
        self.contexts.get(slot.0).map_or(&[], |ctx| ctx.logits())
    }

    /// Takes a free slot for `prompt`, to produce `max_tokens` tokens sampled with `sampler`.
    pub fn start(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampler: SamplerConfig,
    ) -> Result<SlotId, BatcherError> {
        let capacity = self.config.capacity;
        // The last sampled token is not fed back, so `max_tokens - 1` positions follow the prompt.
        if prompt.is_empty() || prompt.len() + max_tokens.saturating_sub(1) > capacity {
            return Err(BatcherError::DoesNotFit {
                prompt: prompt.len(),
                max_tokens,
                capacity,
            });
        }
        let index = self
            .slots
            .iter()
            .position(|s| !s.busy)
            .ok_or(BatcherError::NoFreeSlot)?;
        let slot = &mut self.slots[index];
        slot.busy = true;
        slot.history.clear();
        slot.history.extend_from_slice(prompt);
        slot.prompt_len = prompt.len();
        slot.fed = 0;
        slot.generated = 0;
        slot.max_tokens = max_tokens;
        slot.sampler = Sampler::new(sampler);
        Ok(SlotId(index))
    }

    /// Ends a slot's request and zeroes its KV cache and history.
    pub fn release(&mut self, slot: SlotId) -> Result<(), BatcherError> {
        let state = self
            .slots
            .get_mut(slot.0)
            .filter(|s| s.busy)
            .ok_or(BatcherError::NotBusy(slot))?;
        state.busy = false;
        state.history.fill(0);
        state.history.clear();
        self.contexts[slot.0].reset();
        Ok(())
    }

    /// One batched forward pass over every busy slot that still has input; returns the tokens
    /// sampled in it (empty when no slot had work).
    pub fn step(
        &mut self,
        model: &Model,
        executor: &dyn Executor,
    ) -> Result<&[Emitted], BatcherError> {
        self.tokens.clear();
        self.spans.clear();
        self.emitted.clear();
        for (index, slot) in self.slots.iter().enumerate() {
            if !slot.busy || slot.done() || slot.fed >= slot.history.len() {
                continue;
            }
            let end = if slot.fed < slot.prompt_len {
                (slot.fed + self.config.prefill_chunk).min(slot.prompt_len)
            } else {
                slot.fed + 1
            };
            let start = self.tokens.len();
            self.tokens.extend_from_slice(&slot.history[slot.fed..end]);
            self.spans.push(Span {
                context: index,
                tokens: start..self.tokens.len(),
            });
        }
        if self.spans.is_empty() {
            return Ok(&self.emitted);
        }
        model.forward_batch(
            executor,
            &mut self.scratch,
            &mut self.contexts,
            &self.tokens,
            &self.spans,
        )?;
        self.sample_slots(executor);
        for (span, sampled) in self.spans.iter().zip(&self.sampled) {
            let slot = &mut self.slots[span.context];
            slot.fed += span.tokens.len();
            let Some(token) = *sampled else {
                continue;
            };
            let token = token?;
            slot.history.push(token);
            slot.generated += 1;
            self.emitted.push(Emitted {
                slot: SlotId(span.context),
                token,
                last: slot.done(),
            });
        }
        Ok(&self.emitted)
    }

    /// Samples the next token of every span's slot whose input reaches the end of its prompt in
    /// this step, one task per span (each reads and changes only its own slot and logits), into
    /// `sampled` (`None`: the slot is still in prefill).
    fn sample_slots(&mut self, executor: &dyn Executor) {
        let spans = &self.spans[..];
        self.sampled.clear();
        self.sampled.resize(spans.len(), None);
        let slots = Disjoint::new(&mut self.slots[..]);
        let contexts = Disjoint::new(&mut self.contexts[..]);
        let sampled = Disjoint::new(&mut self.sampled[..]);
        executor.run(spans.len(), &|task, _worker| {
            let span = &spans[task.0];
            // SAFETY: the spans of a step name distinct slots (one span per busy slot), and
            // task `i` alone writes `sampled[i]`.
            let (Some(slot), Some(ctx), Some(out)) = (unsafe {
                (
                    slots.item(span.context),
                    contexts.item(span.context),
                    sampled.item(task.0),
                )
            }) else {
                return;
            };
            if slot.fed + span.tokens.len() < slot.prompt_len {
                return;
            }
            *out = Some(slot.sampler.sample(ctx.logits_mut(), &slot.history));
        });
    }
}
