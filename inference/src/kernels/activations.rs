//! The right-hand side of matrix products: `n` activation vectors of `cols` values, kept both as
//! f32 (for float weights) and quantized to 8 bits per block (for quantized weights). On a CPU
//! with AVX-512 the quantized blocks are also kept spread for its kernels (see `spread`).

use super::aligned::AlignedF32;
use super::spread::{BlockTerms, MINIMUM_GROUP, SpreadBlock, spread_blocks};
use crate::cpu::SimdLevel;
use crate::parallel::{Disjoint, Executor};
use crate::quant::{ActivationBlock, BLOCK, quantize_row_q8};
use alloc::vec::Vec;

/// Activations for up to `capacity` vectors of `cols` values, allocated once.
#[derive(Debug, Clone)]
pub struct Activations {
    /// Whether AVX2 / AVX-512 may be used to quantize (only speed depends on it).
    avx2: bool,
    avx512: bool,
    cols: usize,
    capacity: usize,
    n: usize,
    floats: AlignedF32,
    blocks: Vec<ActivationBlock>,
    /// The blocks spread for the AVX-512 kernels (empty when this CPU has no AVX-512).
    spread: Vec<SpreadBlock>,
    terms: Vec<BlockTerms>,
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
        // Kept whatever `level` is, so AVX-512 kernels can run on any activations this CPU made.
        let has_avx512 = SimdLevel::Avx512.is_supported();
        let (spread, terms) = if blocks > 0 && has_avx512 {
            let group_blocks = capacity.div_ceil(MINIMUM_GROUP) * (cols / BLOCK);
            (
                alloc::vec![SpreadBlock::default(); group_blocks * MINIMUM_GROUP],
                alloc::vec![BlockTerms::default(); group_blocks],
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Self {
            avx2: level != SimdLevel::Scalar && level.is_supported(),
            avx512: level == SimdLevel::Avx512 && has_avx512,
            cols,
            capacity,
            n: 0,
            floats: AlignedF32::zeroed(capacity * cols),
            blocks: alloc::vec![ActivationBlock::default(); blocks],
            spread,
            terms,
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
            let count = n * self.cols / BLOCK;
            quantize(self.avx2, self.avx512, x, &mut self.blocks[..count]);
            if !self.spread.is_empty() {
                // The spread form exists only when this CPU has AVX-512.
                spread_blocks(
                    true,
                    &self.blocks[..count],
                    n,
                    self.cols / BLOCK,
                    &mut self.spread,
                    &mut self.terms,
                );
            }
        }
        true
    }

    /// [`Self::load`] of `n` vectors that `produce(t, row)` writes in place, each produced and
    /// quantized by its own task on `executor` (the same values as producing them serially and
    /// calling `load`). Returns `false` if they do not fit.
    pub fn load_on(
        &mut self,
        executor: &dyn Executor,
        n: usize,
        produce: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) -> bool {
        self.load_with(n, |filler| {
            executor.run(n, &|task, _worker| {
                // SAFETY: task `t` alone produces vector `t`.
                unsafe { filler.produce(task.0, |row| produce(task.0, row)) };
            });
        })
    }

    /// [`Self::load`] of `n` vectors that `fill` produces through the [`RowFiller`] it is
    /// given, each with one [`RowFiller::produce`] call — typically from the tasks of a parallel
    /// run that does other work too, so the vectors need no run of their own. When `fill`
    /// returns, the spread form is made. Returns `false` (without calling `fill`) if they do not
    /// fit.
    pub fn load_with(&mut self, n: usize, fill: impl FnOnce(&RowFiller<'_>)) -> bool {
        if n > self.capacity {
            return false;
        }
        self.n = n;
        let cols = self.cols;
        let per = if self.blocks.is_empty() {
            0
        } else {
            cols / BLOCK
        };
        fill(&RowFiller {
            avx2: self.avx2,
            avx512: self.avx512,
            cols,
            per,
            floats: Disjoint::new(&mut self.floats.as_mut_slice()[..n * cols]),
            blocks: Disjoint::new(&mut self.blocks[..n * per]),
        });
        if per > 0 && !self.spread.is_empty() {
            // The spread form exists only when this CPU has AVX-512.
            spread_blocks(
                true,
                &self.blocks[..n * per],
                n,
                per,
                &mut self.spread,
                &mut self.terms,
            );
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

    /// Whether the spread form for the AVX-512 kernels exists.
    pub(super) fn is_spread(&self) -> bool {
        !self.spread.is_empty()
    }

    /// Group `group` of [`MINIMUM_GROUP`] vectors spread for the AVX-512 kernels, block-major
    /// (see `spread`; empty without AVX-512 or out of range).
    pub(super) fn spread_group(&self, group: usize) -> &[SpreadBlock] {
        let per = self.cols / BLOCK * MINIMUM_GROUP;
        self.spread
            .get(group * per..(group + 1) * per)
            .unwrap_or(&[])
    }

    /// The per-block scalars of group `group` (empty without AVX-512 or out of range).
    pub(super) fn terms(&self, group: usize) -> &[BlockTerms] {
        let per = self.cols / BLOCK;
        self.terms
            .get(group * per..(group + 1) * per)
            .unwrap_or(&[])
    }
}

/// Produces the vectors of one [`Activations::load_with`] call, from any number of threads.
pub struct RowFiller<'a> {
    avx2: bool,
    avx512: bool,
    cols: usize,
    per: usize,
    floats: Disjoint<'a, f32>,
    blocks: Disjoint<'a, ActivationBlock>,
}

impl RowFiller<'_> {
    /// Vector `t`: `produce` writes its `cols` values, then they are quantized. A vector past
    /// the end is ignored.
    ///
    /// # Safety
    /// No two calls for the same `t` may run at the same time.
    pub unsafe fn produce(&self, t: usize, produce: impl FnOnce(&mut [f32])) {
        let (cols, per) = (self.cols, self.per);
        // SAFETY: vector `t`'s floats and blocks are reached only by the calls for `t`, which
        // the caller keeps from overlapping.
        let (Some(row), Some(out)) = (
            unsafe { self.floats.range(t * cols..(t + 1) * cols) },
            unsafe { self.blocks.range(t * per..(t + 1) * per) },
        ) else {
            return;
        };
        produce(row);
        quantize(self.avx2, self.avx512, row, out);
    }
}

/// Quantizes `x` into `out` with the widest instructions allowed (the same bits at every level).
fn quantize(avx2: bool, avx512: bool, x: &[f32], out: &mut [ActivationBlock]) {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: `avx512` is only set when CPUID reported AVX-512 F/BW/VL/VNNI.
        unsafe { crate::quant::quantize_row_q8_avx512(x, out) };
        return;
    } else if avx2 {
        // SAFETY: `avx2` is only set when CPUID reported AVX2 (and more).
        unsafe { crate::quant::quantize_row_q8_avx2(x, out) };
        return;
    }
    let _ = (avx2, avx512);
    quantize_row_q8(x, out);
}
