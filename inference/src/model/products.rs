//! Matrix products of one step split across an [`Executor`]'s workers by blocks of weight rows.
//!
//! Several products share one run (Q, K and V; gate and up), so a layer costs few
//! synchronisations. Each task computes one block of rows of one product for every activation
//! vector, with the same kernel call per row as a serial product, so the results are
//! bit-identical to serial whatever the split.
//!
//! A block's output must be a region no other task touches. With one activation vector, block
//! `r0..r1` is `out[r0..r1]` and the kernel writes it in place. With several, the rows of a block
//! are not contiguous in `out` (`[token][row]`), so each block writes a contiguous staging region
//! (`[token][row of the block]`) and the caller copies the blocks into place afterwards.

use crate::kernels::{Activations, KernelError, Kernels, PackedMatrix};
use crate::parallel::{Executor, RowBlocks, TaskIndex};
use core::sync::atomic::{AtomicBool, Ordering};

/// Rows per block unit: a whole number of the kernels' packed row groups.
const ROW_GRANULE: usize = 8;

/// Most products one run takes.
const MAX_PRODUCTS: usize = 3;

/// One product: `out[t * w.rows() + r] = w[r] · x[t]` for every row and activation vector.
pub struct Product<'a> {
    pub w: &'a PackedMatrix,
    pub x: &'a Activations,
    pub out: &'a mut [f32],
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

/// Scratch a context needs for [`run_products`]: the staging size for up to `max_batch`
/// vectors whose products in one run have `rows_per_run` rows in total.
pub fn staging_len(max_batch: usize, rows_per_run: usize) -> usize {
    if max_batch > 1 {
        max_batch * rows_per_run
    } else {
        0
    }
}

/// Runs `products` (all over the same number of activation vectors) on `executor`.
pub fn run_products(
    kernels: Kernels,
    executor: &dyn Executor,
    products: &mut [Product<'_>],
    staging: &mut [f32],
) -> Result<(), KernelError> {
    let count = products.len().min(MAX_PRODUCTS);
    let products = &mut products[..count];
    if executor.workers() <= 1 {
        for p in products.iter_mut() {
            kernels.matmul(p.w, p.x, 0..p.w.rows(), p.out, p.w.rows())?;
        }
        return Ok(());
    }
    let mut blocks = [RowBlocks::new(0, 1, 1); MAX_PRODUCTS];
    let mut first_task = [0usize; MAX_PRODUCTS + 1];
    let mut staged_at = [0usize; MAX_PRODUCTS];
    let mut destinations = [SharedOut {
        ptr: core::ptr::null_mut(),
        len: 0,
    }; MAX_PRODUCTS];
    let mut staged_total = 0;
    for (i, p) in products.iter_mut().enumerate() {
        let (rows, n) = (p.w.rows(), p.x.n());
        blocks[i] = RowBlocks::for_workers(rows, ROW_GRANULE, executor);
        first_task[i + 1] = first_task[i] + blocks[i].count();
        let needed = n * rows;
        if n == 1 {
            if p.out.len() < needed {
                return Err(KernelError::OutputTooSmall);
            }
            destinations[i] = SharedOut {
                ptr: p.out.as_mut_ptr(),
                len: needed,
            };
        } else {
            staged_at[i] = staged_total;
            staged_total += needed;
            if staging.len() < staged_total || p.out.len() < needed {
                return Err(KernelError::OutputTooSmall);
            }
            destinations[i] = SharedOut {
                // SAFETY: `staged_at[i] + needed <= staging.len()` was checked just above.
                ptr: unsafe { staging.as_mut_ptr().add(staged_at[i]) },
                len: needed,
            };
        }
    }
    let failed = AtomicBool::new(false);
    // The tasks see the inputs only; they reach the outputs through `destinations`.
    let mut inputs: [Option<(&PackedMatrix, &Activations)>; MAX_PRODUCTS] = [None; MAX_PRODUCTS];
    for (input, p) in inputs.iter_mut().zip(products.iter()) {
        *input = Some((p.w, p.x));
    }
    executor.run(first_task[count], &|task, _worker| {
        let i = (0..count)
            .find(|&i| task.0 < first_task[i + 1])
            .unwrap_or(0);
        let Some((w, x)) = inputs[i] else {
            return;
        };
        let rows = blocks[i].block(TaskIndex(task.0 - first_task[i]));
        if rows.is_empty() {
            return;
        }
        let n = x.n();
        let destination = destinations[i];
        let (start, len) = (n * rows.start, n * rows.len());
        if start + len > destination.len {
            failed.store(true, Ordering::Relaxed);
            return;
        }
        // SAFETY: blocks of one product are disjoint row ranges, so the regions
        // `n * rows.start .. n * rows.end` of its destination are disjoint between tasks and lie
        // within it (checked above); the destination buffer is borrowed mutably by this function
        // for the whole run and nothing else reads or writes it meanwhile.
        let out = unsafe { core::slice::from_raw_parts_mut(destination.ptr.add(start), len) };
        if kernels
            .matmul_block(w, x, rows.clone(), out, rows.len())
            .is_err()
        {
            failed.store(true, Ordering::Relaxed);
        }
    });
    if failed.load(Ordering::Relaxed) {
        // The kernels' checks are deterministic: the serial product reports the same error.
        for p in products.iter_mut() {
            kernels.matmul(p.w, p.x, 0..p.w.rows(), p.out, p.w.rows())?;
        }
        return Err(KernelError::OutputTooSmall);
    }
    for (i, p) in products.iter_mut().enumerate() {
        let (rows, n) = (p.w.rows(), p.x.n());
        if n == 1 {
            continue;
        }
        let staged = &staging[staged_at[i]..staged_at[i] + n * rows];
        for b in 0..blocks[i].count() {
            let block = blocks[i].block(TaskIndex(b));
            let width = block.len();
            let region = &staged[n * block.start..n * block.end];
            for (t, source) in region.chunks_exact(width).enumerate() {
                p.out[t * rows + block.start..t * rows + block.end].copy_from_slice(source);
            }
        }
    }
    Ok(())
}
