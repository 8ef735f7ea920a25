//! The per-layer steps shared by [`Model::forward`] and [`Model::forward_batch`]: the
//! attention-input products, the attention output projection and the feed-forward block, each
//! over rows `first..n` of one [`RowBuffers`]. Both passes run exactly this code, so a row's
//! arithmetic (and its order) is the same whichever pass carries it.

use super::config::LlamaConfig;
use super::math::rms_norm;
use super::products::{Product, run_products};
use super::weights::LayerWeights;
use super::{Model, ModelError};
use crate::cpu::SimdLevel;
use crate::kernels::{Activations, AlignedF32, PackedMatrix};
use crate::parallel::Executor;
use alloc::vec::Vec;

/// Row-major activations of up to `rows` tokens and the buffers the layer products need.
#[derive(Debug, Clone)]
pub(super) struct RowBuffers {
    pub(super) x: AlignedF32,
    pub(super) xn: AlignedF32,
    pub(super) q: AlignedF32,
    pub(super) k: AlignedF32,
    pub(super) v: AlignedF32,
    pub(super) att: AlignedF32,
    pub(super) tmp: AlignedF32,
    pub(super) gate: AlignedF32,
    pub(super) up: AlignedF32,
    pub(super) act_dim: Activations,
    pub(super) act_q: Activations,
    pub(super) act_ffn: Activations,
    /// Block-major product outputs of a batched step split across workers (see `products`).
    pub(super) staging: Vec<f32>,
}

impl RowBuffers {
    pub(super) fn new(c: &LlamaConfig, level: SimdLevel, rows: usize, staging_len: usize) -> Self {
        let f = |per_row: usize| AlignedF32::zeroed(rows * per_row);
        Self {
            x: f(c.dim),
            xn: f(c.dim),
            q: f(c.q_dim()),
            k: f(c.kv_dim()),
            v: f(c.kv_dim()),
            att: f(c.q_dim()),
            tmp: f(c.dim),
            gate: f(c.ffn_dim),
            up: f(c.ffn_dim),
            act_dim: Activations::with_level(rows, c.dim, level),
            act_q: Activations::with_level(rows, c.q_dim(), level),
            act_ffn: Activations::with_level(rows, c.ffn_dim, level),
            staging: alloc::vec![0.0; staging_len],
        }
    }
}

/// The widest single run of products a layer makes (Q/K/V together, gate/up together, or one
/// `dim`-row product), per row: what `staging` must hold per row.
pub(super) fn widest_run(c: &LlamaConfig) -> usize {
    (c.q_dim() + 2 * c.kv_dim()).max(2 * c.ffn_dim).max(c.dim)
}

impl Model {
    /// Attention norm of rows `0..n` of `x`, quantized, then their Q, K and V products.
    pub(super) fn attention_inputs(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        n: usize,
    ) -> Result<(), ModelError> {
        let (dim, eps) = (self.config.dim, self.config.rms_eps);
        let x = b.x.as_slice();
        b.act_dim.load_on(executor, n, &|t, row| {
            rms_norm(&x[t * dim..(t + 1) * dim], &layer.attn_norm, eps, row);
        });
        let x = &b.act_dim;
        run_products(
            self.kernels,
            executor,
            &mut [
                Product {
                    w: &layer.wq,
                    x,
                    out: b.q.as_mut_slice(),
                },
                Product {
                    w: &layer.wk,
                    x,
                    out: b.k.as_mut_slice(),
                },
                Product {
                    w: &layer.wv,
                    x,
                    out: b.v.as_mut_slice(),
                },
            ],
            &mut b.staging,
        )?;
        Ok(())
    }

    /// Output projection of attention rows `first..n` of `att`, added to the same rows of `x`.
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
        self.add_product(executor, &layer.wo, ResidualInput::Attention, b, first, n)
    }

    /// Feed-forward block (norm, gate and up products, SwiGLU, down product, residual add) for
    /// rows `first..n` of `x`.
    pub(super) fn feed_forward(
        &self,
        executor: &dyn Executor,
        layer: &LayerWeights,
        b: &mut RowBuffers,
        first: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let (dim, ffn, eps) = (self.config.dim, self.config.ffn_dim, self.config.rms_eps);
        let m = n - first;
        let x = b.x.as_slice();
        b.act_dim.load_on(executor, m, &|t, row| {
            let t = first + t;
            rms_norm(&x[t * dim..(t + 1) * dim], &layer.ffn_norm, eps, row);
        });
        let x = &b.act_dim;
        run_products(
            self.kernels,
            executor,
            &mut [
                Product {
                    w: &layer.w_gate,
                    x,
                    out: b.gate.as_mut_slice(),
                },
                Product {
                    w: &layer.w_up,
                    x,
                    out: b.up.as_mut_slice(),
                },
            ],
            &mut b.staging,
        )?;
        let (gate, up) = (b.gate.as_slice(), b.up.as_slice());
        b.act_ffn.load_on(executor, m, &|t, row| {
            let range = t * ffn..(t + 1) * ffn;
            self.math.swiglu(&gate[range.clone()], &up[range], row);
        });
        self.add_product(
            executor,
            &layer.w_down,
            ResidualInput::FeedForward,
            b,
            first,
            n,
        )
    }

    /// `x[first..n] += w · input`: the product into `tmp`, then the residual add (the attention
    /// output projection and the feed-forward down product end the same way).
    fn add_product(
        &self,
        executor: &dyn Executor,
        w: &PackedMatrix,
        input: ResidualInput,
        b: &mut RowBuffers,
        first: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let dim = self.config.dim;
        let RowBuffers {
            x,
            tmp,
            staging,
            act_q,
            act_ffn,
            ..
        } = b;
        let input = match input {
            ResidualInput::Attention => &*act_q,
            ResidualInput::FeedForward => &*act_ffn,
        };
        run_products(
            self.kernels,
            executor,
            &mut [Product {
                w,
                x: input,
                out: tmp.as_mut_slice(),
            }],
            staging,
        )?;
        add_in_place(
            &mut x.as_mut_slice()[first * dim..n * dim],
            &tmp.as_slice()[..(n - first) * dim],
        );
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

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
