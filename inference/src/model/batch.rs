//! One forward step over several sequences at once: the rows of every sequence's chunk are
//! gathered into one batch, so each weight matrix is read once for all of them, while attention
//! runs per sequence over its own [`Context`]'s KV cache.
//!
//! Every row goes through the same per-row arithmetic as in [`Model::forward`] (matrix rows are
//! independent of the other activation vectors in the batch; norms, RoPE and SwiGLU are per
//! row), and each sequence's attention uses the summation order and padded key/value length its
//! chunk would have alone. So a sequence's logits are bit-identical to running it alone with
//! the same chunking (`max_batch` equal to the chunk size).

use super::attention::{AttentionScratch, SumOrder, attend_group, padded_kv_len};
use super::layer::{RowBuffers, widest_run};
use super::math::{rms_norm, rope_angles};
use super::products::load_and_run_products;
use super::{Context, Model, ModelError};
use crate::kernels::{Activations, Fill, RowFiller};
use crate::parallel::{Disjoint, Executor, TaskIndex, WorkerIndex};
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
}

/// One span's rows of the step's buffers (rows `first..` of the step).
struct SpanRows<'a> {
    q: &'a mut [f32],
    k: &'a mut [f32],
    v: &'a mut [f32],
    angles: &'a [(f32, f32)],
    first: usize,
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
                .map(|_| {
                    AttentionScratch::for_group(
                        capacity.max(1),
                        c.head_dim,
                        c.n_heads / c.n_kv_heads,
                    )
                })
                .collect(),
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
        // The previous step's last residual is for rows this step has just replaced.
        s.rows.residual = None;
        for (layer_index, layer) in self.weights.layers.iter().enumerate() {
            self.attention_inputs(executor, layer, &mut s.rows, rows)?;
            self.attend_spans(executor, layer_index, s, contexts, spans, rows)?;
            self.feed_forward(executor, layer, &mut s.rows, 0, rows)?;
        }
        self.output_logits(executor, s, contexts, spans)
    }

    /// Final norm and output head for each span's last row, all spans in one product, then
    /// each span's logits into its context (one task per span).
    fn output_logits(
        &self,
        executor: &dyn Executor,
        s: &mut BatchScratch,
        contexts: &mut [Context],
        spans: &[Span],
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let dim = c.dim;
        let residual = s.rows.residual.take();
        let x = Disjoint::new(s.rows.x.as_mut_slice());
        let sums = &s.rows.sums[..];
        let normalise = |filler: &RowFiller<'_>, task: TaskIndex, _worker: WorkerIndex| {
            let i = task.0;
            let Some(last) = spans[..=i]
                .iter()
                .map(|span| span.tokens.len())
                .sum::<usize>()
                .checked_sub(1)
            else {
                return;
            };
            // SAFETY: every span has its own last row, so task `i` alone touches row `last`,
            // and it alone produces vector `i`.
            unsafe {
                let Some(x_row) = x.range(last * dim..(last + 1) * dim) else {
                    return;
                };
                if let Some(residual) = residual {
                    residual.add_to(sums, last, x_row);
                }
                filler.produce(i, |row| {
                    rms_norm(x_row, &self.weights.output_norm, c.rms_eps, row);
                });
            }
        };
        let [head, ..] = load_and_run_products(
            self.kernels,
            executor,
            &[self.weights.output_head()],
            &mut s.act_out,
            Fill {
                vectors: spans.len(),
                tasks: spans.len(),
                task: &normalise,
            },
            &mut s.rows.staging,
        )?;
        let staging = &s.rows.staging[..];
        let contexts = Disjoint::new(contexts);
        executor.run(spans.len(), &|task, _worker| {
            let i = task.0;
            let span = &spans[i];
            // SAFETY: spans name distinct contexts (checked by `check_batch`), one task each.
            let Some(ctx) = (unsafe { contexts.item(span.context) }) else {
                return;
            };
            ctx.position += span.tokens.len();
            ctx.last_in_batch = span.tokens.len() - 1;
            head.copy_row(staging, i, &mut ctx.logits);
        });
        Ok(())
    }

    /// RoPE, KV-cache store and attention for every span of the step, one task per span on
    /// `executor` (each span touches only its own context, rows and scratch), each task
    /// quantizing its rows' attention outputs; then, in the same run, the output projection,
    /// pending for the residual stream.
    fn attend_spans(
        &self,
        executor: &dyn Executor,
        layer_index: usize,
        s: &mut BatchScratch,
        contexts: &mut [Context],
        spans: &[Span],
        rows: usize,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let q = Disjoint::new(s.rows.q.as_mut_slice());
        let k = Disjoint::new(s.rows.k.as_mut_slice());
        let v = Disjoint::new(s.rows.v.as_mut_slice());
        let scratches = Disjoint::new(&mut s.attention[..]);
        let contexts = Disjoint::new(contexts);
        let (staged, staging) = (&s.rows.staged, &s.rows.staging[..]);
        let angles = &s.angles[..];
        let half = c.head_dim / 2;
        let attend = |attention_out: &RowFiller<'_>, task: TaskIndex, _worker: WorkerIndex| {
            let i = task.0;
            let span = &spans[i];
            let first = spans[..i].iter().map(|s| s.tokens.len()).sum::<usize>();
            let rows = first..first + span.tokens.len();
            // SAFETY: every task takes a different span: spans name distinct contexts (checked
            // by `check_batch`), own disjoint row ranges of the step, and task `i` alone uses
            // scratch `i` (`check_batch` keeps the spans within the scratches). The buffers
            // outlive the run, which returns when every task has.
            let (ctx, q, k, v, scratch) = unsafe {
                (
                    contexts.item(span.context),
                    q.range(rows.start * q_dim..rows.end * q_dim),
                    k.range(rows.start * kv_dim..rows.end * kv_dim),
                    v.range(rows.start * kv_dim..rows.end * kv_dim),
                    scratches.item(i),
                )
            };
            let (Some(ctx), Some(q), Some(k), Some(v), Some(scratch)) = (ctx, q, k, v, scratch)
            else {
                return;
            };
            self.gather_qkv(staged, staging, rows.clone(), (&mut *q, &mut *k, &mut *v));
            self.attend_span(
                layer_index,
                ctx,
                SpanRows {
                    q,
                    k,
                    v,
                    angles: &angles[rows.start * half..rows.end * half],
                    first: rows.start,
                },
                scratch,
                attention_out,
            );
        };
        let fill = Fill {
            vectors: rows,
            tasks: spans.len(),
            task: &attend,
        };
        let layer = &self.weights.layers[layer_index];
        s.rows.residual = Some(self.residual_product(
            executor,
            &layer.wo,
            &mut s.rows.act_q,
            fill,
            &mut s.rows.sums,
            0,
        )?);
        Ok(())
    }

    /// One span's part of a layer's attention: RoPE on its queries and keys, its keys and values
    /// into its context's cache, then every token's query heads over that cache, one group of
    /// heads sharing a KV head at a time, each token's heads straight into its row of `out`.
    fn attend_span(
        &self,
        layer_index: usize,
        ctx: &mut Context,
        rows: SpanRows<'_>,
        scratch: &mut AttentionScratch,
        out: &RowFiller<'_>,
    ) {
        let c = &self.config;
        let (q_dim, kv_dim, half) = (c.q_dim(), c.kv_dim(), c.head_dim / 2);
        let group_dim = (c.n_heads / c.n_kv_heads) * c.head_dim;
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
            let write = |row: &mut [f32]| {
                for kv_head in 0..c.n_kv_heads {
                    let at = ctx.cache_offset(layer_index, kv_head, 0);
                    let cached = at..at + (pos + 1) * c.head_dim;
                    let heads = kv_head * group_dim..(kv_head + 1) * group_dim;
                    attend_group(
                        self.kernels.level(),
                        order,
                        &rows.q[i * q_dim..][heads.clone()],
                        &ctx.keys[cached.clone()],
                        &ctx.values[cached],
                        pos,
                        n_kv,
                        scratch,
                        &mut row[heads],
                    );
                }
            };
            // SAFETY: the span's rows belong to this task alone (see `attend_spans`).
            unsafe { out.produce(rows.first + i, write) };
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
