//! Matrix products of one step split across an [`Executor`]'s workers by blocks of weight rows.
//!
//! Several products share one run (Q, K and V; gate and up), so a layer costs few
//! synchronisations. Each task computes one block of rows of one product for every activation
//! vector, with the same kernel call per row as a serial product, so the results are
//! bit-identical to serial whatever the split.
//!
//! A block's output must be a region no other task touches, and with several activation vectors
//! the rows of a block are not contiguous in a `[vector][row]` matrix. So every block writes a
//! contiguous region of a staging buffer, `[vector][row of the block]`, and the outputs stay
//! there: the phase that consumes them (a per-vector task of the next parallel run, or the
//! attention of one sequence) reads vector `t`'s values piece by piece through [`Staged`]. No
//! thread copies them into place between the runs. With one vector, or one block, the staging
//! is simply `[vector][row]`.

use crate::kernels::{Activations, Fill, KernelError, Kernels, PackedMatrix};
use crate::parallel::{Executor, RowBlocks, TaskIndex};
use core::sync::atomic::{AtomicBool, Ordering};

/// Rows per block unit: a whole number of the kernels' packed row groups.
const ROW_GRANULE: usize = 8;

/// Most products one run takes.
pub const MAX_PRODUCTS: usize = 3;

/// Where one product of a run left its outputs in the staging buffer: block `b` of its row
/// split (`blocks`) holds `[vector][row of the block]` at `at + vectors * block.start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    blocks: RowBlocks,
    at: usize,
    vectors: usize,
}

impl Staged {
    /// No outputs.
    pub const EMPTY: Self = Self {
        blocks: RowBlocks::new(0, 1, 1),
        at: 0,
        vectors: 0,
    };

    /// The outputs of vector `t` in row order, as pieces `(first row, values)` (none for a
    /// vector past the end).
    pub fn pieces<'s>(
        &self,
        staging: &'s [f32],
        t: usize,
    ) -> impl Iterator<Item = (usize, &'s [f32])> + 's {
        let this = *self;
        let count = if t < this.vectors {
            this.blocks.count()
        } else {
            0
        };
        (0..count).map(move |b| {
            let rows = this.blocks.block(TaskIndex(b));
            let start = this.at + this.vectors * rows.start + t * rows.len();
            // In range: `run_products` checked the staging holds every block.
            let values = staging.get(start..start + rows.len()).unwrap_or(&[]);
            (rows.start, values)
        })
    }

    /// Vector `t`'s outputs when they lie in one piece (one block — a single worker — or one
    /// vector), else `None`.
    pub fn row<'s>(&self, staging: &'s [f32], t: usize) -> Option<&'s [f32]> {
        let count = self.blocks.count();
        if t >= self.vectors || count == 0 || (count > 1 && self.vectors > 1) {
            return None;
        }
        // One block is `[vector][row]`; with one vector the blocks follow one another.
        let rows = self.blocks.block(TaskIndex(count - 1)).end;
        let start = self.at + t * rows;
        staging.get(start..start + rows)
    }

    /// Copies vector `t`'s outputs into `out` (one value per row).
    pub fn copy_row(&self, staging: &[f32], t: usize, out: &mut [f32]) {
        for (first, values) in self.pieces(staging, t) {
            if let Some(out) = out.get_mut(first..first + values.len()) {
                out.copy_from_slice(values);
            }
        }
    }

    /// Adds vector `t`'s outputs to `x` (one value per row), in place.
    pub fn add_to_row(&self, staging: &[f32], t: usize, x: &mut [f32]) {
        for (first, values) in self.pieces(staging, t) {
            if let Some(x) = x.get_mut(first..first + values.len()) {
                for (a, &b) in x.iter_mut().zip(values) {
                    *a += b;
                }
            }
        }
    }
}

/// A destination that tasks write in disjoint regions.
#[derive(Clone, Copy)]
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks only form slices over disjoint regions of the buffer (see `run_products`), and
// the buffer outlives the run, which returns only when every task is done.
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// All of `staging`, which the caller borrows mutably for as long as the regions are used.
    fn of(staging: &mut [f32]) -> Self {
        Self {
            ptr: staging.as_mut_ptr(),
            len: staging.len(),
        }
    }

    /// `len` values from `start`, or `None` past the end.
    ///
    /// # Safety
    /// No other live region obtained from `self` may overlap this one.
    unsafe fn region<'a>(&self, start: usize, len: usize) -> Option<&'a mut [f32]> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return None;
        }
        // SAFETY: in bounds (checked above) of the staging buffer, which `run_products` borrows
        // mutably for the whole run (nothing else touches it) and which outlives every task;
        // the caller keeps the regions disjoint.
        Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), len) })
    }
}

/// Staging a buffer needs for up to `vectors` activation vectors whose products in one run
/// have `rows_per_run` rows in total.
pub fn staging_len(vectors: usize, rows_per_run: usize) -> usize {
    vectors * rows_per_run
}

/// How one run splits its products: each product's row blocks, where its outputs go, and the
/// tasks that compute them (those of product `i` are `first_task[i]..first_task[i + 1]`).
struct Plan {
    staged: [Staged; MAX_PRODUCTS],
    first_task: [usize; MAX_PRODUCTS + 1],
    count: usize,
}

impl Plan {
    /// The split of `weights` (at most [`MAX_PRODUCTS`]) times `vectors` activation vectors on
    /// `executor`, into a staging buffer of `staging` values.
    fn new(
        weights: &[&PackedMatrix],
        vectors: usize,
        executor: &dyn Executor,
        staging: usize,
    ) -> Result<Self, KernelError> {
        let count = weights.len().min(MAX_PRODUCTS);
        let mut plan = Self {
            staged: [Staged::EMPTY; MAX_PRODUCTS],
            first_task: [0; MAX_PRODUCTS + 1],
            count,
        };
        let mut total = 0;
        for (i, w) in weights[..count].iter().enumerate() {
            let rows = w.rows();
            let blocks = if executor.workers() <= 1 {
                RowBlocks::new(rows, ROW_GRANULE, 1)
            } else {
                RowBlocks::for_workers(rows, ROW_GRANULE, executor)
            };
            plan.staged[i] = Staged {
                blocks,
                at: total,
                vectors,
            };
            plan.first_task[i + 1] = plan.first_task[i] + blocks.count();
            total += vectors * rows;
        }
        if staging < total {
            return Err(KernelError::OutputTooSmall);
        }
        Ok(plan)
    }

    fn tasks(&self) -> usize {
        self.first_task[self.count]
    }

    /// Task `task`: one row block of one product, for every vector of `x`, into its region of
    /// the staging buffer. Sets `failed` if the kernel refuses the operands.
    fn task(
        &self,
        kernels: Kernels,
        weights: &[&PackedMatrix],
        x: &Activations,
        destination: SharedOut,
        task: TaskIndex,
        failed: &AtomicBool,
    ) {
        let i = (0..self.count)
            .find(|&i| task.0 < self.first_task[i + 1])
            .unwrap_or(0);
        let (Some(w), Some(layout)) = (weights.get(i), self.staged.get(i)) else {
            return;
        };
        let rows = layout.blocks.block(TaskIndex(task.0 - self.first_task[i]));
        if rows.is_empty() {
            return;
        }
        let (start, len) = (
            layout.at + layout.vectors * rows.start,
            layout.vectors * rows.len(),
        );
        // SAFETY: the blocks of one product are disjoint row ranges and the products' regions
        // follow one another, so the regions `at + vectors * rows` of the tasks are disjoint.
        let Some(out) = (unsafe { destination.region(start, len) }) else {
            failed.store(true, Ordering::Relaxed);
            return;
        };
        if kernels
            .matmul_block(w, x, rows.clone(), out, rows.len())
            .is_err()
        {
            failed.store(true, Ordering::Relaxed);
        }
    }

    /// After a task failed: the same products serially, which report the kernels' error (their
    /// checks are deterministic).
    fn error(
        &self,
        kernels: Kernels,
        weights: &[&PackedMatrix],
        x: &Activations,
        staging: &mut [f32],
    ) -> KernelError {
        for (w, staged) in weights.iter().zip(&self.staged[..self.count]) {
            let rows = w.rows();
            let Some(out) = staging.get_mut(staged.at..staged.at + staged.vectors * rows) else {
                return KernelError::OutputTooSmall;
            };
            if let Err(error) = kernels.matmul(w, x, 0..rows, out, rows) {
                return error;
            }
        }
        KernelError::OutputTooSmall
    }
}

/// Runs the products of `weights` (at most [`MAX_PRODUCTS`]) with activations that `fill`
/// produces first, in the same run of `executor` (see [`Activations::load_then`]: no
/// synchronisation between making the vectors and using them other than waiting for the last
/// of them), into `staging`, one after another, and returns where each one's outputs are (see
/// [`Staged`]).
pub fn load_and_run_products(
    kernels: Kernels,
    executor: &dyn Executor,
    weights: &[&PackedMatrix],
    x: &mut Activations,
    fill: Fill<'_>,
    staging: &mut [f32],
) -> Result<[Staged; MAX_PRODUCTS], KernelError> {
    let plan = Plan::new(weights, fill.vectors, executor, staging.len())?;
    let destination = SharedOut::of(staging);
    let failed = AtomicBool::new(false);
    let loaded = x.load_then(executor, fill, plan.tasks(), &|x, task, _worker| {
        plan.task(kernels, weights, x, destination, task, &failed);
    });
    if !loaded {
        return Err(KernelError::OutputTooSmall);
    }
    if failed.load(Ordering::Relaxed) {
        return Err(plan.error(kernels, weights, x, staging));
    }
    Ok(plan.staged)
}
