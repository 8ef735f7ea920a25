//! The right-hand side of matrix products: `n` activation vectors of `cols` values, kept both as
//! f32 (for float weights) and quantized to 8 bits per block (for quantized weights).

use super::aligned::AlignedF32;
use crate::cpu::SimdLevel;
use crate::quant::{ActivationBlock, BLOCK, quantize_row_q8};
use alloc::vec::Vec;

/// Activations for up to `capacity` vectors of `cols` values, allocated once.
#[derive(Debug, Clone)]
pub struct Activations {
    /// Whether AVX2 may be used to quantize (only speed depends on it).
    avx2: bool,
    cols: usize,
    capacity: usize,
    n: usize,
    floats: AlignedF32,
    blocks: Vec<ActivationBlock>,
}

impl Activations {
    /// Activations quantized with portable code.
    pub fn new(capacity: usize, cols: usize) -> Self {
        Self::with_level(capacity, cols, SimdLevel::Scalar)
    }

    /// Activations quantized with the instructions of `level` (identical results at every
    /// level; a level the CPU lacks falls back to portable code).
    pub fn with_level(capacity: usize, cols: usize, level: SimdLevel) -> Self {
        let blocks = if cols.is_multiple_of(BLOCK) {
            capacity * cols / BLOCK
        } else {
            0
        };
        Self {
            avx2: level != SimdLevel::Scalar && level.is_supported(),
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
            let out = &mut self.blocks[..n * self.cols / BLOCK];
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                // SAFETY: `avx2` is only set when CPUID reported AVX2 (and more).
                unsafe { crate::quant::quantize_row_q8_avx2(x, out) };
                return true;
            }
            quantize_row_q8(x, out);
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
