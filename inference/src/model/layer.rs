//! The per-layer steps shared by [`Model::forward`] and [`Model::forward_batch`]: the
//! attention-input products, the attention output projection and the feed-forward block, each
//! over rows `first..n` of one [`RowBuffers`]. Both passes run exactly this code, so a row's
//! arithmetic (and its order) is the same whichever pass carries it.
//!
//! Every product's outputs stay in the staging buffer where its tasks wrote them (see
//! `products`), and the next parallel phase reads them row by row: the residual additions of
//! the output projection and of the down product happen inside the tasks that normalise those
//! rows next ([`Residual`]), the SwiGLU tasks gather their gate and up rows themselves, and
//! attention gathers its queries, keys and values. The calling thread copies nothing between
//! the runs.

use super::config::LlamaConfig;
use super::math::rms_norm;
use super::products::{MAX_PRODUCTS, Staged, load_and_run_products};
use super::weights::LayerWeights;
use super::{Model, ModelError};
use crate::cpu::SimdLevel;
use crate::kernels::{Activations, AlignedF32, Fill, PackedMatrix, RowFiller};
use crate::parallel::{Disjoint, Executor, TaskIndex, WorkerIndex};
use alloc::vec::Vec;
use core::ops::Range;

/// Row-major activations of up to `rows` tokens and the buffers the layer products need.
#[derive(Debug, Clone)]
pub(super) struct RowBuffers {
    pub(super) x: AlignedF32,
    pub(super) q: AlignedF32,
    pub(super) k: AlignedF32,
    pub(super) v: AlignedF32,
    pub(super) att: AlignedF32,
    pub(super) gate: AlignedF32,
    pub(super) up: AlignedF32,
    pub(super) act_dim: Activations,
    pub(super) act_q: Activations,
    pub(super) act_ffn: Activations,
    /// Block-major product outputs (see `products`).
    pub(super) staging: Vec<f32>,
    /// The same for the products that feed the residual stream (output projection, down),
    /// which stay pending (see [`Residual`]) while the next run fills `staging`.
    pub(super) sums: Vec<f32>,
    /// Where the latest run of products left each product's outputs in `staging`.
    pub(super) staged: [Staged; MAX_PRODUCTS],
    /// A product not yet added to the residual stream `x`.
    pub(super) residual: Option<Residual>,
}

/// `x[first + t] += ` output `t` of `staged` (in `sums`), for every vector of `staged`: how the
/// attention output projection and the feed-forward down product end. It is left to the next
/// phase that reads those rows of `x`, which adds it inside its per-row tasks, before the next
/// residual product reuses `sums`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Residual {
    staged: Staged,
    first: usize,
}

impl Residual {
    /// Adds the pending product to `x_row`, row `row` of `x` (rows it does not cover stay).
    pub(super) fn add_to(&self, staging: &[f32], row: usize, x_row: &mut [f32]) {
        if let Some(t) = row.checked_sub(self.first) {
            self.staged.add_to_row(staging, t, x_row);
        }
    }
}

impl RowBuffers {
    pub(super) fn new(c: &LlamaConfig, level: SimdLevel, rows: usize, staging_len: usize) -> Self {
        let f = |per_row: usize| AlignedF32::zeroed(rows * per_row);
        Self {
            x: f(c.dim),
            q: f(c.q_dim()),
            k: f(c.kv_dim()),
            v: f(c.kv_dim()),
            att: f(c.q_dim()),
            gate: f(c.ffn_dim),
            up: f(c.ffn_dim),
            act_dim: Activations::with_level(rows, c.dim, level),
            act_q: Activations::with_level(rows, c.q_dim(), level),
            act_ffn: Activations::with_level(rows, c.ffn_dim, level),
            staging: alloc::vec![0.0; staging_len],
            sums: alloc::vec![0.0; rows * c.dim],
            staged: [Staged::EMPTY; MAX_PRODUCTS],
            residual: None,
        }
    }
}

/// The widest single run of products a layer makes (Q/K/V together, gate/up together, or one
/// `dim`-row product), per row: what `staging` must hold per row.
pub(super) fn widest_run(c: &LlamaConfig) -> usize {
    (c.q_dim() + 2 * c.kv_dim()).max(2 * c.ffn_dim).max(c.dim)
}

impl Model {
    /// Copies the queries, keys and values of rows `rows` from the latest Q/K/V run (`staged`
    /// in `staging`) into `q`, `k` and `v`, which hold those rows only.
    pub(super) fn gather_qkv(
        &self,
        staged: &[Staged; MAX_PRODUCTS],
        staging: &[f32],
        rows: Range<usize>,
        (q, k, v): (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        let (q_dim, kv_dim) = (self.config.q_dim(), self.config.kv_dim());
        for (i, t) in rows.enumerate() {
            staged[0].copy_row(staging, t, &mut q[i * q_dim..(i + 1) * q_dim]);
            staged[1].copy_row(staging, t, &mut k[i * kv_dim..(i + 1) * kv_dim]);
            staged[2].copy_row(staging, t, &mut v[i * kv_dim..(i + 1) * kv_dim]);
        }
    }

    /// Rows `first..first + m` of `x` with any pending residual added, normalised with `norm`
    /// into `act_dim` (one task per row), then the products of `weights` with them into
    /// `staging`, all in one run.
    fn normalised_products(
        &self,
        executor: &dyn Executor,
        norm: &[f32],
        b: &mut RowBuffers,
        first: usize,
        m: usize,
        weights: &[&PackedMatrix],
    ) -> Result<[Staged; MAX_PRODUCTS], ModelError> {
        let (dim, eps) = (self.config.dim, self.config.rms_eps);
        let residual = b.residual.take();
        let RowBuffers {
            x,
            sums,
            staging,
            act_dim,
            ..
        } = b;
        let x = Disjoint::new(x.as_mut_slice());
        let sums = &sums[..];
        let normalise = |filler: &RowFiller<'_>, task: TaskIndex, _worker: WorkerIndex| {
            let t = first + task.0;
            // SAFETY: task `t` alone touches row `t` of `x` and produces vector `task`.
            unsafe {
                let Some(x_row) = x.range(t * dim..(t + 1) * dim) else {
                    return;
                };
                if let Some(residual) = residual {
                    residual.add_to(sums, t, x_row);
                }
                filler.produce(task.0, |row| rms_norm(x_row, norm, eps, row));
            }
        };
        let fill = Fill {
            vectors: m,
            tasks: m,
            task: &normalise,
        };
        Ok(load_and_run_products(
            self.kernels,
            executor,
            weights,
            act_dim,
            fill,
            staging,
        )?)
    }

    /// Attention norm of rows `0..n` of `x` (after any pending residual), quantized, then their
    /// Q, K and V products (left staged: see [`Self::gather_qkv`]).
    pub(super) fn attention_inputs(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        n: usize,
    ) -> Result<(), ModelError> {
        b.staged = self.normalised_products(
            executor,
            &layer.attn_norm,
            b,
            0,
            n,
            &[&layer.wq, &layer.wk, &layer.wv],
        )?;
        Ok(())
    }

    /// Output projection of attention rows `first..n` of `att`, pending for the same rows of `x`.
    pub(super) fn attention_output(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        first: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let q_dim = self.config.q_dim();
        let RowBuffers {
            att,
            act_q,
            sums,
            residual,
            ..
        } = b;
        let att = att.as_slice();
        let copy = |filler: &RowFiller<'_>, task: TaskIndex, _worker: WorkerIndex| {
            let t = first + task.0;
            // SAFETY: task `t` alone produces vector `task`.
            unsafe {
                filler.produce(task.0, |row| {
                    row.copy_from_slice(&att[t * q_dim..(t + 1) * q_dim])
                })
            };
        };
        let fill = Fill {
            vectors: n - first,
            tasks: n - first,
            task: &copy,
        };
        *residual = Some(self.residual_product(executor, &layer.wo, act_q, fill, sums, first)?);
        Ok(())
    }

    /// Feed-forward block (residual of the attention, norm, gate and up products, SwiGLU, down
    /// product, pending for the residual stream) for rows `first..n` of `x`.
    pub(super) fn feed_forward(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        first: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let ffn = self.config.ffn_dim;
        let m = n - first;
        b.staged = self.normalised_products(
            executor,
            &layer.ffn_norm,
            b,
            first,
            m,
            &[&layer.w_gate, &layer.w_up],
        )?;
        let RowBuffers {
            gate,
            up,
            staging,
            staged,
            act_ffn,
            sums,
            residual,
            ..
        } = b;
        let (gate, up) = (
            Disjoint::new(gate.as_mut_slice()),
            Disjoint::new(up.as_mut_slice()),
        );
        let (staging, staged) = (&staging[..], &*staged);
        let swiglu = |filler: &RowFiller<'_>, task: TaskIndex, _worker: WorkerIndex| {
            let t = task.0;
            let range = t * ffn..(t + 1) * ffn;
            // SAFETY: task `t` alone touches row `t` of `gate` and `up` and produces vector `t`.
            unsafe {
                let (Some(gate), Some(up)) = (gate.range(range.clone()), up.range(range)) else {
                    return;
                };
                // The pieces the products left feed SwiGLU in place when each starts on a
                // 16-value boundary: `swiglu`'s split between its 16-lane part and its tail
                // then falls where it does on the whole row, so the values are the same.
                let pieces = || {
                    staged[0]
                        .pieces(staging, t)
                        .zip(staged[1].pieces(staging, t))
                };
                let aligned = pieces().all(|((at, g), (at_up, u))| {
                    at == at_up && g.len() == u.len() && at.is_multiple_of(16)
                });
                if aligned {
                    filler.produce(t, |row| {
                        for ((at, gate), (_, up)) in pieces() {
                            if let Some(row) = row.get_mut(at..at + gate.len()) {
                                self.math.swiglu(gate, up, row);
                            }
                        }
                    });
                    return;
                }
                // Otherwise gathered first, unless the products were in one piece.
                let gate = staged[0].row(staging, t).unwrap_or_else(|| {
                    staged[0].copy_row(staging, t, gate);
                    gate
                });
                let up = staged[1].row(staging, t).unwrap_or_else(|| {
                    staged[1].copy_row(staging, t, up);
                    up
                });
                filler.produce(t, |row| self.math.swiglu(gate, up, row));
            }
        };
        let fill = Fill {
            vectors: m,
            tasks: m,
            task: &swiglu,
        };
        *residual =
            Some(self.residual_product(executor, &layer.w_down, act_ffn, fill, sums, first)?);
        Ok(())
    }

    /// `w · input`, with `input` produced by `fill` in the same run, into `sums`: pending for
    /// rows `first..` of `x` (the attention output projection and the feed-forward down product
    /// end the same way).
    pub(super) fn residual_product(
        &self,
        executor: &dyn Executor,
        w: &PackedMatrix,
        input: &mut Activations,
        fill: Fill<'_>,
        sums: &mut [f32],
        first: usize,
    ) -> Result<Residual, ModelError> {
        let [staged, ..] = load_and_run_products(self.kernels, executor, &[w], input, fill, sums)?;
        Ok(Residual { staged, first })
    }
}
