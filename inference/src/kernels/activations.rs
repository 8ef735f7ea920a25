//! The right-hand side of matrix products: `n` activation vectors of `cols` values, kept both as
//! f32 (for float weights) and quantized to 8 bits per block (for quantized weights). On a CPU
//! with AVX-512 the quantized blocks are also kept spread for its kernels (see `spread`).

use super::aligned::AlignedF32;
use super::spread::{BlockTerms, MINIMUM_GROUP, SpreadBlock, spread_blocks};
use crate::cpu::SimdLevel;
use crate::parallel::{Disjoint, Executor, Phase, RowBlocks, TaskIndex, WorkerIndex, run_phases};
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
        self.load_then(
            executor,
            Fill {
                vectors: n,
                tasks: n,
                // SAFETY: task `t` alone produces vector `t`.
                task: &|filler, task, _worker| unsafe {
                    filler.produce(task.0, |row| produce(task.0, row))
                },
            },
            0,
            &|_, _, _| {},
        )
    }

    /// Loads `fill.vectors` vectors and uses them, all in one run of `executor` split into
    /// phases (see [`run_phases`]): `fill.tasks` tasks produce the vectors through the
    /// [`RowFiller`] they are given (each vector with exactly one [`RowFiller::produce`] call),
    /// then tasks over the block columns make the spread form, then `then(activations, i,
    /// worker)` runs for every `i` in `0..then_tasks` with the loaded activations (the same
    /// values as [`Self::load`] of the vectors). Returns `false` (running nothing) if they do
    /// not fit.
    pub fn load_then(
        &mut self,
        executor: &dyn Executor,
        fill: Fill<'_>,
        then_tasks: usize,
        then: &(dyn Fn(&Activations, TaskIndex, WorkerIndex) + Sync),
    ) -> bool {
        let n = fill.vectors;
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
        let groups = n.div_ceil(MINIMUM_GROUP);
        let spread_len = groups * per * MINIMUM_GROUP;
        let spreads = if per > 0 && !self.spread.is_empty() && spread_len <= self.spread.len() {
            groups * per
        } else {
            0
        };
        // One task per group of vectors: a decode step's group is spread by one worker (it is
        // too little work to share), a prompt's groups by all.
        let group_split = RowBlocks::for_workers(spreads / per.max(1), 1, executor);
        // The phases reach the buffers through raw parts: the fill and spread phases write
        // disjoint parts of them, the last phase reads them through `&self` once every write is
        // done, which the phase boundaries order (release/acquire).
        let floats = raw_parts(self.floats.as_mut_slice(), n * cols);
        let blocks = raw_parts(&mut self.blocks, n * per);
        let spread = raw_parts(&mut self.spread, spread_len);
        let terms = raw_parts(&mut self.terms, spreads);
        let this = &*self;
        // SAFETY: the parts are within the buffers (`raw_parts` caps them), which outlive the
        // run; who touches which part when is argued at each use below and in `RowFiller`.
        let (floats, blocks, spread, terms) = unsafe {
            (
                Disjoint::from_raw_parts(floats),
                Disjoint::from_raw_parts(blocks),
                Disjoint::from_raw_parts(spread),
                Disjoint::from_raw_parts(terms),
            )
        };
        let filler = RowFiller {
            avx2: this.avx2,
            avx512: this.avx512,
            cols,
            per,
            floats,
            blocks,
        };
        let spread_task = |task: TaskIndex, _worker: WorkerIndex| {
            // SAFETY: the fill phase is over, so nothing writes the blocks any more.
            let Some(blocks) = (unsafe { filler.blocks.shared(0..n * per) }) else {
                return;
            };
            for group in group_split.block(task) {
                let at = group * per;
                // SAFETY: every group belongs to one task, and its spread blocks and terms to it
                // alone.
                let (Some(spread), Some(terms)) = (unsafe {
                    (
                        spread.range(at * MINIMUM_GROUP..(at + per) * MINIMUM_GROUP),
                        terms.range(at..at + per),
                    )
                }) else {
                    continue;
                };
                let first = group * MINIMUM_GROUP;
                let vectors = (first..n.min(first + MINIMUM_GROUP)).len();
                // The group's vectors lie one after another; the spread form exists only when
                // this CPU has AVX-512.
                if let Some(group_blocks) = blocks.get(first * per..(first + vectors) * per) {
                    spread_blocks(true, group_blocks, vectors, per, spread, terms);
                }
            }
        };
        run_phases(
            executor,
            &[
                Phase {
                    tasks: fill.tasks,
                    task: &|task, worker| (fill.task)(&filler, task, worker),
                },
                Phase {
                    tasks: group_split.count(),
                    task: &spread_task,
                },
                Phase {
                    tasks: then_tasks,
                    task: &|task, worker| then(this, task, worker),
                },
            ],
        );
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

/// Produces the vectors of one [`Activations::load_then`] call, from any number of threads.
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
        let (Some(row), Some(out)) = (unsafe {
            (
                self.floats.range(t * cols..(t + 1) * cols),
                self.blocks.range(t * per..(t + 1) * per),
            )
        }) else {
            return;
        };
        produce(row);
        quantize(self.avx2, self.avx512, row, out);
    }
}

/// The start of `items` and `len` (at most its length), as raw parts for [`Disjoint`].
fn raw_parts<T>(items: &mut [T], len: usize) -> (*mut T, usize) {
    (items.as_mut_ptr(), len.min(items.len()))
}

/// How [`Activations::load_then`] produces its vectors: `vectors` of them, by `tasks` calls of
/// `task(filler, i, worker)`.
#[derive(Clone, Copy)]
pub struct Fill<'a> {
    pub vectors: usize,
    pub tasks: usize,
    #[allow(clippy::type_complexity)]
    pub task: &'a (dyn Fn(&RowFiller<'_>, TaskIndex, WorkerIndex) + Sync),
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
