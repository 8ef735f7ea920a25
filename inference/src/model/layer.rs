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
use super::products::{MAX_PRODUCTS, Product, Staged, run_products};
use super::weights::LayerWeights;
use super::{Model, ModelError};
use crate::cpu::SimdLevel;
use crate::kernels::{Activations, AlignedF32, PackedMatrix};
use crate::parallel::{Disjoint, Executor};
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
    /// Where the latest run of products left each product's outputs in `staging`.
    pub(super) staged: [Staged; MAX_PRODUCTS],
    /// A product not yet added to the residual stream `x`.
    pub(super) residual: Option<Residual>,
}

/// `x[first + t] += ` output `t` of `staged`, for every vector of `staged`: how the attention
/// output projection and the feed-forward down product end. It is left to the next phase that
/// reads those rows of `x`, which adds it inside its per-row tasks; it must happen before the
/// next run of products reuses the staging buffer.
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

    /// Rows `first..first + m` of `x` with any pending residual added, normalised with
    /// `norm` into `act_dim` (one task per row; `act_dim` row `t` is `x` row `first + t`).
    fn load_normalised(
        &self,
        executor: &dyn Executor,
        norm: &[f32],
        b: &mut RowBuffers,
        first: usize,
        m: usize,
    ) {
        let (dim, eps) = (self.config.dim, self.config.rms_eps);
        let residual = b.residual.take();
        let RowBuffers {
            x,
            staging,
            act_dim,
            ..
        } = b;
        let x = Disjoint::new(x.as_mut_slice());
        let staging = &staging[..];
        act_dim.load_on(executor, m, &|t, row| {
            let t = first + t;
            // SAFETY: task `t` alone touches row `t` of `x`.
            let Some(x_row) = (unsafe { x.range(t * dim..(t + 1) * dim) }) else {
                return;
            };
            if let Some(residual) = residual {
                residual.add_to(staging, t, x_row);
            }
            rms_norm(x_row, norm, eps, row);
        });
    }

    /// Attention norm of rows `0..n` of `x` (after any pending residual), quantized, then their
    /// Q, K and V products (left staged: see [`RowBuffers::gather_qkv`]).
    pub(super) fn attention_inputs(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        n: usize,
    ) -> Result<(), ModelError> {
        self.load_normalised(executor, &layer.attn_norm, b, 0, n);
        let x = &b.act_dim;
        b.staged = run_products(
            self.kernels,
            executor,
            &[
                Product { w: &layer.wq, x },
                Product { w: &layer.wk, x },
                Product { w: &layer.wv, x },
            ],
            &mut b.staging,
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
        let att = b.att.as_slice();
        b.act_q.load_on(executor, n - first, &|t, row| {
            row.copy_from_slice(&att[(first + t) * q_dim..(first + t + 1) * q_dim]);
        });
        self.output_projection(executor, layer, b, first)
    }

    /// Output projection of the attention rows already in `act_q` (rows `first..` of the step),
    /// pending for the same rows of `x`.
    pub(super) fn output_projection(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        first: usize,
    ) -> Result<(), ModelError> {
        self.residual_product(executor, &layer.wo, ResidualInput::Attention, b, first)
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
        self.load_normalised(executor, &layer.ffn_norm, b, first, m);
        let x = &b.act_dim;
        b.staged = run_products(
            self.kernels,
            executor,
            &[
                Product {
                    w: &layer.w_gate,
                    x,
                },
                Product { w: &layer.w_up, x },
            ],
            &mut b.staging,
        )?;
        let RowBuffers {
            gate,
            up,
            staging,
            staged,
            act_ffn,
            ..
        } = b;
        let (gate, up) = (
            Disjoint::new(gate.as_mut_slice()),
            Disjoint::new(up.as_mut_slice()),
        );
        let (staging, staged) = (&staging[..], &*staged);
        act_ffn.load_on(executor, m, &|t, row| {
            let range = t * ffn..(t + 1) * ffn;
            // SAFETY: task `t` alone touches row `t` of `gate` and `up`.
            let (Some(gate), Some(up)) = (unsafe { gate.range(range.clone()) }, unsafe {
                up.range(range)
            }) else {
                return;
            };
            staged[0].copy_row(staging, t, gate);
            staged[1].copy_row(staging, t, up);
            self.math.swiglu(gate, up, row);
        });
        self.residual_product(
            executor,
            &layer.w_down,
            ResidualInput::FeedForward,
            b,
            first,
        )
    }

    /// `w · input`, pending for rows `first..` of `x` (the attention output projection and the
    /// feed-forward down product end the same way).
    fn residual_product(
        &self,
        executor: &dyn Executor,
        w: &PackedMatrix,
        input: ResidualInput,
        b: &mut RowBuffers,
        first: usize,
    ) -> Result<(), ModelError> {
        let x = match input {
            ResidualInput::Attention => &b.act_q,
            ResidualInput::FeedForward => &b.act_ffn,
        };
        b.staged = run_products(self.kernels, executor, &[Product { w, x }], &mut b.staging)?;
        b.residual = Some(Residual {
            staged: b.staged[0],
            first,
        });
        Ok(())
    }
}

/// The activations a product that feeds the residual stream reads.
#[derive(Clone, Copy)]
enum ResidualInput {
    /// The attention rows (`act_q`), for the output projection.
    Attention,
    /// The SwiGLU rows (`act_ffn`), for the down product.
    FeedForward,
}
