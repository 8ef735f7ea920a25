//! LLaMA forward pass (`general.architecture = llama`): token embedding, RMS norm, RoPE (normal
//! mode, adjacent pairs), grouped-query attention over an f16 KV cache, SwiGLU feed-forward,
//! final norm and output head (tied to the embedding when the file has no `output.weight`).
//!
//! The arithmetic follows llama.cpp's CPU backend closely enough to give the same greedy tokens:
//! activations are quantized to 8 bits per block exactly as it does, quantized products sum in its
//! order, and attention rounds through f16 where it does (see `attention`).
//!
//! A [`Model`] is immutable and shared; each sequence has its own [`Context`] (KV cache and all
//! scratch buffers, allocated once): nothing is allocated per token.

mod attention;
mod batch;
mod config;
mod error;
mod layer;
mod math;
mod products;
mod trig;
mod weights;

pub use attention::SumOrder;
pub use batch::{BatchScratch, Span};
pub use config::LlamaConfig;
pub use error::ModelError;
#[doc(hidden)]
pub use trig::sincosf;
pub use weights::{LayerWeights, Weights};

use crate::cpu::SimdLevel;
use crate::gguf::Gguf;
use crate::kernels::{Activations, Fill, Kernels, RowFiller};
use crate::parallel::{Executor, Serial, TaskIndex, WorkerIndex};
use alloc::vec::Vec;
use attention::{AttentionScratch, attend_group, padded_kv_len};
use layer::{RowBuffers, widest_run};
use math::{Math, rms_norm, rope_angles};
use products::{load_and_run_products, staging_len};

/// A loaded model: hyper-parameters, packed weights and the kernels that run them.
#[derive(Debug, Clone)]
pub struct Model {
    config: LlamaConfig,
    weights: Weights,
    kernels: Kernels,
    math: Math,
}

impl Model {
    /// Validates the file's hyper-parameters and tensor shapes and packs the weights.
    pub fn from_gguf(gguf: &Gguf<'_>, kernels: Kernels) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_gguf(gguf)?;
        let weights = Weights::load(gguf, &config)?;
        Ok(Self {
            config,
            weights,
            kernels,
            math: Math::new(kernels.level()),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// A fresh context holding up to `capacity` positions, processing up to `max_batch` tokens
    /// per step (longer inputs are split into steps of that size).
    pub fn new_context(&self, capacity: usize, max_batch: usize) -> Context {
        Context::new(
            &self.config,
            self.kernels.level(),
            capacity.max(1),
            max_batch.max(1),
        )
    }

    /// Appends `tokens` to the context's sequence and returns the logits after the last one.
    pub fn forward<'c>(
        &self,
        ctx: &'c mut Context,
        tokens: &[u32],
    ) -> Result<&'c [f32], ModelError> {
        self.forward_on(&Serial, ctx, tokens)
    }

    /// [`Self::forward`] with every matrix product split by rows across `executor`'s workers.
    /// The logits are bit-identical to [`Self::forward`]'s for any executor.
    pub fn forward_on<'c>(
        &self,
        executor: &dyn Executor,
        ctx: &'c mut Context,
        tokens: &[u32],
    ) -> Result<&'c [f32], ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(ModelError::BadToken(bad));
        }
        if ctx.position + tokens.len() > ctx.capacity {
            return Err(ModelError::ContextFull {
                capacity: ctx.capacity,
            });
        }
        let chunks = tokens.len().div_ceil(ctx.max_batch);
        for (i, chunk) in tokens.chunks(ctx.max_batch).enumerate() {
            self.step(executor, ctx, chunk, i + 1 == chunks)?;
        }
        self.logits(executor, ctx)?;
        Ok(&ctx.logits)
    }

    /// Runs the layers over one batch of tokens (at most `max_batch`). In the last step only the
    /// last token's logits are wanted, so after the last layer's keys and values are stored, the
    /// rest of that layer runs for the last token alone (as llama.cpp does; rows are independent,
    /// so its values do not change).
    fn step(
        &self,
        executor: &dyn Executor,
        ctx: &mut Context,
        tokens: &[u32],
        last_step: bool,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let n = tokens.len();
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
        let start = ctx.position;
        let order = if n > 1 {
            SumOrder::Batch
        } else {
            SumOrder::Decode
        };
        let n_kv = padded_kv_len(start + n - 1, ctx.capacity);
        let half = c.head_dim / 2;
        for (t, &token) in tokens.iter().enumerate() {
            let row = &mut ctx.rows.x.as_mut_slice()[t * dim..(t + 1) * dim];
            self.weights
                .embedding
                .dequantize_row_into(token as usize, row);
            rope_angles(
                start + t,
                c.rope_freq_base,
                c.head_dim,
                &mut ctx.angles[t * half..(t + 1) * half],
            );
        }
        // The previous step's last residual is for rows this step has just replaced.
        ctx.rows.residual = None;
        for (layer_index, layer) in self.weights.layers.iter().enumerate() {
            let first = if last_step && layer_index + 1 == c.n_layers {
                n - 1
            } else {
                0
            };
            self.attention_inputs(executor, layer, &mut ctx.rows, n)?;
            let rows = &mut ctx.rows;
            self.gather_qkv(
                &rows.staged,
                &rows.staging,
                0..n,
                (
                    &mut rows.q.as_mut_slice()[..n * q_dim],
                    &mut rows.k.as_mut_slice()[..n * kv_dim],
                    &mut rows.v.as_mut_slice()[..n * kv_dim],
                ),
            );
            for t in 0..n {
                let angles = &ctx.angles[t * half..(t + 1) * half];
                for head in ctx.rows.q.as_mut_slice()[t * q_dim..(t + 1) * q_dim]
                    .chunks_exact_mut(c.head_dim)
                {
                    self.math.rope(head, angles);
                }
                for head in ctx.rows.k.as_mut_slice()[t * kv_dim..(t + 1) * kv_dim]
                    .chunks_exact_mut(c.head_dim)
                {
                    self.math.rope(head, angles);
                }
                ctx.store_kv(&self.math, layer_index, start + t, t);
            }
            let group_dim = (c.n_heads / c.n_kv_heads) * c.head_dim;
            for t in first..n {
                let pos = start + t;
                // The query heads sharing a KV head attend together.
                for kv_head in 0..c.n_kv_heads {
                    let at = ctx.cache_offset(layer_index, kv_head, 0);
                    let rows = at..at + (pos + 1) * c.head_dim;
                    let (keys, values) = (&ctx.keys[rows.clone()], &ctx.values[rows]);
                    let heads =
                        t * q_dim + kv_head * group_dim..t * q_dim + (kv_head + 1) * group_dim;
                    attend_group(
                        self.kernels.level(),
                        order,
                        &ctx.rows.q.as_slice()[heads.clone()],
                        keys,
                        values,
                        pos,
                        n_kv,
                        &mut ctx.scratch,
                        &mut ctx.rows.att.as_mut_slice()[heads],
                    );
                }
            }
            self.attention_output(executor, layer, &mut ctx.rows, first, n)?;
            self.feed_forward(executor, layer, &mut ctx.rows, first, n)?;
        }
        ctx.position += n;
        ctx.last_in_batch = n - 1;
        Ok(())
    }

    /// Final norm and output head for the last token of the last step.
    fn logits(&self, executor: &dyn Executor, ctx: &mut Context) -> Result<(), ModelError> {
        let dim = self.config.dim;
        let t = ctx.last_in_batch;
        let RowBuffers {
            x, sums, residual, ..
        } = &mut ctx.rows;
        let x = &mut x.as_mut_slice()[t * dim..(t + 1) * dim];
        if let Some(residual) = residual.take() {
            residual.add_to(sums, t, x);
        }
        let x = &*x;
        let normalise = |filler: &RowFiller<'_>, _task: TaskIndex, _worker: WorkerIndex| {
            let norm = |row: &mut [f32]| {
                rms_norm(x, &self.weights.output_norm, self.config.rms_eps, row);
            };
            // SAFETY: the one task produces the one vector.
            unsafe { filler.produce(0, norm) };
        };
        // One vector: its staged outputs are the logits in order, written in place.
        load_and_run_products(
            self.kernels,
            executor,
            &[self.weights.output_head()],
            &mut ctx.act_out,
            Fill {
                vectors: 1,
                tasks: 1,
                task: &normalise,
            },
            &mut ctx.logits,
        )?;
        Ok(())
    }
}

/// One sequence's state: KV cache (`[layer][kv_head][position][head_dim]`) and every
/// buffer a step needs, allocated once.
#[derive(Debug, Clone)]
pub struct Context {
    capacity: usize,
    max_batch: usize,
    position: usize,
    last_in_batch: usize,
    n_kv_heads: usize,
    head_dim: usize,
    /// Keys and values rounded to f16 (as llama.cpp's f16 cache holds them), stored as the f16
    /// bits: half the memory and memory traffic of f32, and widening them back is exact.
    keys: Vec<u16>,
    values: Vec<u16>,
    rows: RowBuffers,
    act_out: Activations,
    angles: Vec<(f32, f32)>,
    scratch: AttentionScratch,
    logits: Vec<f32>,
}

impl Context {
    fn new(c: &LlamaConfig, level: SimdLevel, capacity: usize, max_batch: usize) -> Self {
        let cache = c.n_layers * c.kv_dim() * capacity;
        Self {
            capacity,
            max_batch,
            position: 0,
            last_in_batch: 0,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            keys: alloc::vec![0; cache],
            values: alloc::vec![0; cache],
            rows: RowBuffers::new(c, level, max_batch, staging_len(max_batch, widest_run(c))),
            act_out: Activations::with_level(1, c.dim, level),
            angles: alloc::vec![(0.0, 0.0); max_batch * c.head_dim / 2],
            scratch: AttentionScratch::for_group(capacity, c.head_dim, c.n_heads / c.n_kv_heads),
            logits: alloc::vec![0.0; c.vocab_size],
        }
    }

    /// Tokens in the sequence so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Logits after the last token processed.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Forgets the sequence and zeroes the KV cache (the prompt's traces) and the logits.
    pub fn reset(&mut self) {
        self.position = 0;
        self.keys.fill(0);
        self.values.fill(0);
        self.logits.fill(0.0);
    }

    fn cache_offset(&self, layer: usize, kv_head: usize, pos: usize) -> usize {
        ((layer * self.n_kv_heads + kv_head) * self.capacity + pos) * self.head_dim
    }

    /// Logits after the last token processed, writable (samplers apply penalties in place).
    pub fn logits_mut(&mut self) -> &mut [f32] {
        &mut self.logits
    }

    /// Writes token `t` of the step (at position `pos`) into the cache, rounded through f16.
    fn store_kv(&mut self, math: &Math, layer: usize, pos: usize, t: usize) {
        let kv_dim = self.n_kv_heads * self.head_dim;
        let rows = t * kv_dim..(t + 1) * kv_dim;
        let (k, v) = (
            core::mem::take(&mut self.rows.k),
            core::mem::take(&mut self.rows.v),
        );
        self.store_kv_row(
            math,
            layer,
            pos,
            &k.as_slice()[rows.clone()],
            &v.as_slice()[rows],
        );
        (self.rows.k, self.rows.v) = (k, v);
    }

    /// Writes one token's keys and values (`kv_dim` each) at position `pos`, rounded through f16.
    fn store_kv_row(&mut self, math: &Math, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        for head in 0..self.n_kv_heads {
            let at = self.cache_offset(layer, head, pos);
            let source = head * self.head_dim..(head + 1) * self.head_dim;
            let rows = at..at + self.head_dim;
            math.f16_bits_slice(&k[source.clone()], &mut self.keys[rows.clone()]);
            math.f16_bits_slice(&v[source], &mut self.values[rows]);
        }
    }
}
