//! One forward step over several sequences at once: the rows of every sequence's chunk are
//! gathered into one batch, so each weight matrix is read once for all of them, while attention
//! runs per sequence over its own [`Context`]'s KV cache.
//!
//! Every row goes through the same per-row arithmetic as in [`Model::forward`] (matrix rows are
//! independent of the other activation vectors in the batch; norms, RoPE and SwiGLU are per
//! row), and each sequence's attention uses the summation order and padded key/value length its
//! chunk would have alone. So a sequence's logits are bit-identical to running it alone with
//! the same chunking (`max_batch` equal to the chunk size).

use super::attention::{AttentionScratch, SumOrder, attend, padded_kv_len};
use super::layer::{RowBuffers, widest_run};
use super::math::{rms_norm, rope_angles};
use super::products::{Product, run_products};
use super::{Context, Model, ModelError};
use crate::kernels::Activations;
use crate::parallel::{Disjoint, Executor};
use alloc::vec::Vec;
use core::ops::Range;

/// One sequence's part of a batched step: `tokens` (indices into the step's token list) are
/// appended to context `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub context: usize,
    pub tokens: Range<usize>,
}

/// Buffers for batched steps of up to `max_rows` tokens from up to `max_spans` sequences whose
/// contexts hold at most `capacity` positions; allocated once.
#[derive(Debug, Clone)]
pub struct BatchScratch {
    max_rows: usize,
    max_spans: usize,
    capacity: usize,
    rows: RowBuffers,
    act_out: Activations,
    angles: Vec<(f32, f32)>,
    /// One per span, so spans attend in parallel.
    attention: Vec<AttentionScratch>,
    logits: Vec<f32>,
}

/// One span's rows of the step's buffers.
struct SpanRows<'a> {
    q: &'a mut [f32],
    k: &'a mut [f32],
    v: &'a [f32],
    angles: &'a [(f32, f32)],
    att: &'a mut [f32],
}

impl Model {
    /// Scratch for [`Self::forward_batch`].
    pub fn new_batch_scratch(
        &self,
        max_rows: usize,
        max_spans: usize,
        capacity: usize,
    ) -> BatchScratch {
        let c = &self.config;
        let level = self.kernels.level();
        let (max_rows, max_spans) = (max_rows.max(1), max_spans.max(1));
        BatchScratch {
            max_rows,
            max_spans,
            capacity,
            rows: RowBuffers::new(
                c,
                level,
                max_rows,
                (max_rows * widest_run(c)).max(max_spans * c.vocab_size),
            ),
            act_out: Activations::with_level(max_spans, c.dim, level),
            angles: alloc::vec![(0.0, 0.0); max_rows * c.head_dim / 2],
            attention: (0..max_spans)
                .map(|_| AttentionScratch::new(capacity.max(1), c.head_dim))
                .collect(),
            logits: alloc::vec![0.0; max_spans * c.vocab_size],
        }
    }

    /// Appends each span's tokens to its context in one batched pass and leaves each context's
    /// logits (after its span's last token) in it. Spans must name distinct contexts.
    pub fn forward_batch(
        &self,
        executor: &dyn Executor,
        scratch: &mut BatchScratch,
        contexts: &mut [Context],
        tokens: &[u32],
        spans: &[Span],
    ) -> Result<(), ModelError> {
        self.check_batch(scratch, contexts, tokens, spans)?;
        let c = &self.config;
        let rows = spans.iter().map(|s| s.tokens.len()).sum::<usize>();
        let dim = c.dim;
        let half = c.head_dim / 2;
        let s = scratch;
        // Gathered row of every token: spans in order, each span's tokens in order.
        let mut row = 0;
        for span in spans {
            let start = contexts[span.context].position;
            for (i, &token) in tokens[span.tokens.clone()].iter().enumerate() {
                self.weights.embedding.dequantize_row_into(
                    token as usize,
                    &mut s.rows.x.as_mut_slice()[row * dim..][..dim],
                );
                rope_angles(
                    start + i,
                    c.rope_freq_base,
                    c.head_dim,
                    &mut s.angles[row * half..(row + 1) * half],
                );
                row += 1;
            }
        }
        for (layer_index, layer) in self.weights.layers.iter().enumerate() {
            self.attention_inputs(executor, layer, &mut s.rows, rows)?;
            self.attend_spans(executor, layer_index, s, contexts, spans);
            self.attention_output(executor, layer, &mut s.rows, 0, rows)?;
            self.feed_forward(executor, layer, &mut s.rows, 0, rows)?;
        }
        // Final norm and output head for each span's last row, all spans in one product.
        let mut last = 0;
        for (i, span) in spans.iter().enumerate() {
            last += span.tokens.len();
            let t = last - 1;
            rms_norm(
                &s.rows.x.as_slice()[t * dim..(t + 1) * dim],
                &self.weights.output_norm,
                c.rms_eps,
                &mut s.rows.xn.as_mut_slice()[i * dim..(i + 1) * dim],
            );
        }
        s.act_out
            .load(&s.rows.xn.as_slice()[..spans.len() * dim], spans.len());
        run_products(
            self.kernels,
            executor,
            &mut [Product {
                w: self.weights.output_head(),
                x: &s.act_out,
                out: &mut s.logits,
            }],
            &mut s.rows.staging,
        )?;
        let vocab = c.vocab_size;
        for (i, span) in spans.iter().enumerate() {
            let ctx = &mut contexts[span.context];
            ctx.position += span.tokens.len();
            ctx.last_in_batch = span.tokens.len() - 1;
            ctx.logits
                .copy_from_slice(&s.logits[i * vocab..(i + 1) * vocab]);
        }
        Ok(())
    }

    /// RoPE, KV-cache store and attention for every span of the step, one task per span on
    /// `executor` (each span touches only its own context, rows and scratch).
    fn attend_spans(
        &self,
        executor: &dyn Executor,
        layer_index: usize,
        s: &mut BatchScratch,
        contexts: &mut [Context],
        spans: &[Span],
    ) {
        let c = &self.config;
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let q = Disjoint::new(s.rows.q.as_mut_slice());
        let k = Disjoint::new(s.rows.k.as_mut_slice());
        let att = Disjoint::new(s.rows.att.as_mut_slice());
        let scratches = Disjoint::new(&mut s.attention[..]);
        let contexts = Disjoint::new(contexts);
        let (v, angles) = (s.rows.v.as_slice(), &s.angles[..]);
        let half = c.head_dim / 2;
        executor.run(spans.len(), &|task, _worker| {
            let i = task.0;
            let span = &spans[i];
            let first = spans[..i].iter().map(|s| s.tokens.len()).sum::<usize>();
            let rows = first..first + span.tokens.len();
            // SAFETY: every task takes a different span: spans name distinct contexts (checked
            // by `check_batch`), own disjoint row ranges of the step, and task `i` alone uses
            // scratch `i` (`check_batch` keeps the spans within the scratches). The buffers
            // outlive the run, which returns when every task has.
            let (ctx, q, k, att, scratch) = unsafe {
                (
                    contexts.item(span.context),
                    q.range(rows.start * q_dim..rows.end * q_dim),
                    k.range(rows.start * kv_dim..rows.end * kv_dim),
                    att.range(rows.start * q_dim..rows.end * q_dim),
                    scratches.item(i),
                )
            };
            let (Some(ctx), Some(q), Some(k), Some(att), Some(scratch)) = (ctx, q, k, att, scratch)
            else {
                return;
            };
            self.attend_span(
                layer_index,
                ctx,
                SpanRows {
                    q,
                    k,
                    v: &v[rows.start * kv_dim..rows.end * kv_dim],
                    angles: &angles[rows.start * half..rows.end * half],
                    att,
                },
                scratch,
            );
        });
    }

    /// One span's part of a layer's attention: RoPE on its queries and keys, its keys and values
    /// into its context's cache, then every head of every token over that cache.
    fn attend_span(
        &self,
        layer_index: usize,
        ctx: &mut Context,
        rows: SpanRows<'_>,
        scratch: &mut AttentionScratch,
    ) {
        let c = &self.config;
        let (q_dim, kv_dim, half) = (c.q_dim(), c.kv_dim(), c.head_dim / 2);
        let (start, n) = (ctx.position, rows.q.len() / q_dim);
        let order = if n > 1 {
            SumOrder::Batch
        } else {
            SumOrder::Decode
        };
        let n_kv = padded_kv_len(start + n - 1, ctx.capacity);
        for i in 0..n {
            let angles = &rows.angles[i * half..(i + 1) * half];
            for head in rows.q[i * q_dim..(i + 1) * q_dim].chunks_exact_mut(c.head_dim) {
                self.math.rope(head, angles);
            }
            for head in rows.k[i * kv_dim..(i + 1) * kv_dim].chunks_exact_mut(c.head_dim) {
                self.math.rope(head, angles);
            }
            ctx.store_kv_row(
                &self.math,
                layer_index,
                start + i,
                &rows.k[i * kv_dim..(i + 1) * kv_dim],
                &rows.v[i * kv_dim..(i + 1) * kv_dim],
            );
        }
        for i in 0..n {
            let pos = start + i;
            for head in 0..c.n_heads {
                let kv_head = head / (c.n_heads / c.n_kv_heads);
                let at = ctx.cache_offset(layer_index, kv_head, 0);
                let cached = at..at + (pos + 1) * c.head_dim;
                let query = i * q_dim + head * c.head_dim..i * q_dim + (head + 1) * c.head_dim;
                attend(
                    self.kernels.level(),
                    order,
                    &rows.q[query.clone()],
                    &ctx.keys[cached.clone()],
                    &ctx.values[cached],
                    pos,
                    n_kv,
                    scratch,
                    &mut rows.att[query],
                );
            }
        }
    }

    fn check_batch(
        &self,
        scratch: &BatchScratch,
        contexts: &[Context],
        tokens: &[u32],
        spans: &[Span],
    ) -> Result<(), ModelError> {
        if spans.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        if spans.len() > scratch.max_spans {
            return Err(ModelError::BadBatch(
                "more sequences than the scratch holds",
            ));
        }
        let mut rows = 0usize;
        for (i, span) in spans.iter().enumerate() {
            if span.tokens.is_empty() {
                return Err(ModelError::EmptyInput);
            }
            let Some(chunk) = tokens.get(span.tokens.clone()) else {
                return Err(ModelError::BadBatch("a span's tokens are out of range"));
            };
            if let Some(&bad) = chunk
                .iter()
                .find(|&&t| t as usize >= self.config.vocab_size)
            {
                return Err(ModelError::BadToken(bad));
            }
            let Some(ctx) = contexts.get(span.context) else {
                return Err(ModelError::BadBatch("a span names a missing context"));
            };
            if spans[..i].iter().any(|other| other.context == span.context) {
                return Err(ModelError::BadBatch("a context appears twice"));
            }
            if ctx.capacity > scratch.capacity {
                return Err(ModelError::BadBatch(
                    "a context is larger than the scratch's",
                ));
            }
            if ctx.position + chunk.len() > ctx.capacity {
                return Err(ModelError::ContextFull {
                    capacity: ctx.capacity,
                });
            }
            rows += chunk.len();
        }
        if rows > scratch.max_rows {
            return Err(ModelError::BadBatch("more rows than the scratch holds"));
        }
        Ok(())
    }
}
