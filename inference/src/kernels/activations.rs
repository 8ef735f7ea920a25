//! The right-hand side of matrix products: `n` activation vectors of `cols` values, kept both as
//! f32 (for float weights) and quantized to 8 bits per block (for quantized weights).

use super::aligned::AlignedF32;
use crate::quant::{ActivationBlock, BLOCK, quantize_row_q8};
use alloc::vec::Vec;

/// Activations for up to `capacity` vectors of `cols` values, allocated once.
#[derive(Debug, Clone)]
pub struct Activations {
    cols: usize,
    capacity: usize,
    n: usize,
    floats: AlignedF32,
    blocks: Vec<ActivationBlock>,
}

impl Activations {
    pub fn new(capacity: usize, cols: usize) -> Self {
        let blocks = if cols.is_multiple_of(BLOCK) {
            capacity * cols / BLOCK
        } else {
            0
        };
        Self {
            cols,
            capacity,
            n: 0,
            floats: AlignedF32::zeroed(capacity * cols),
            blocks: alloc::vec![ActivationBlock::default(); blocks],
        }
    }

    /// Loads `n` vectors stored one after another in `x` (`x.len() == n * cols`) and quantizes
    /// them. Returns `false` if they do not fit.
    pub fn load(&mut self, x: &[f32], n: usize) -> bool {
        if n > self.capacity || x.len() != n * self.cols {
            return false;
        }
        self.n = n;
        self.floats.as_mut_slice()[..x.len()].copy_from_slice(x);
        if !self.blocks.is_empty() {
            quantize_row_q8(x, &mut self.blocks[..n * self.cols / BLOCK]);
        }
        true
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the quantized form exists (`cols` is a whole number of blocks).
    pub fn is_quantized(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Vector `t` as f32.
    pub fn floats(&self, t: usize) -> &[f32] {
        &self.floats.as_slice()[t * self.cols..(t + 1) * self.cols]
    }

    /// Vector `t` quantized.
    pub fn blocks(&self, t: usize) -> &[ActivationBlock] {
        let per = self.cols / BLOCK;
        &self.blocks[t * per..(t + 1) * per]
    }
}
