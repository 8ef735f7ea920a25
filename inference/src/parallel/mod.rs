//! Work splitting for the engine: an [`Executor`] runs `tasks` independent pieces of one step on
//! its workers and returns when all are done.
//!
//! # How the engine uses it
//!
//! Split each matrix product by **row blocks** of the weight matrix: task `t` computes output
//! rows [`RowBlocks::block`]`(t)` for every input row (every slot of the batch), so each weight
//! block is read once, by one worker. Plan the blocks with [`RowBlocks::new`] — whole multiples
//! of the kernel's row tile, a few blocks per worker so a slow worker does not hold the others
//! up — then call [`Executor::run`] with `blocks.count()` tasks.
//!
//! Every `run` is one synchronisation point (publish, then wait for the last task), a few
//! microseconds on the host pool, so aim for few per layer: e.g. Q, K and V products in one
//! run (their rows concatenated), attention per head in one run, gate and up in one run, down in
//! one run. Element-wise work between them (norms, RoPE, SwiGLU) is cheaper done by the caller
//! than synchronised.
//!
//! The [`WorkerIndex`] passed to a task is in `0..workers()`, and no two tasks run at the same
//! time with the same index: index per-worker scratch buffers (quantized activations, partial
//! sums) with it, allocated once for `workers()` workers, without locks.
//!
//! # Executors
//!
//! - [`Serial`]: everything on the calling thread (tests, one CPU).
//! - [`ThreadPool`] (feature `std`, host): std threads that spin briefly, then park, between
//!   jobs.
//! - The enclave kernel's pool over its application processors (`ward-kernel`'s
//!   `arch::smp::pool`), built on the same [`board::Board`].
//!
//! Tasks are claimed dynamically (one atomic increment each), so uneven tasks and unequal
//! workers balance themselves. Calling `run` from inside a task of the same executor is handled:
//! the inner call runs its tasks inline, in order, on the calling worker with its index.

pub mod board;
mod disjoint;
mod phases;
#[cfg(any(test, feature = "std"))]
mod threads;

#[cfg(any(test, feature = "std"))]
pub use threads::ThreadPool;

pub(crate) use disjoint::Disjoint;
pub use phases::{MAX_PHASES, Phase, run_phases};

use core::ops::Range;

/// Which task of a run: `0..tasks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskIndex(pub usize);

/// Which worker runs a task: `0..workers()`, exclusive while the task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerIndex(pub usize);

/// Runs independent tasks on a fixed set of workers.
pub trait Executor: Sync {
    /// How many workers (including the calling thread) may run tasks at once: size per-worker
    /// scratch with it.
    fn workers(&self) -> usize;

    /// Calls `task(TaskIndex(i), worker)` once for every `i` in `0..tasks`, on any workers, and
    /// returns when every call has returned (their writes are then visible to the caller).
    ///
    /// Tasks are *started* in index order: a worker takes the lowest index not yet taken (calls
    /// may still overlap and finish in any order). [`run_phases`] relies on it: a task may wait
    /// for tasks of lower indices.
    fn run(&self, tasks: usize, task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync));

    /// Runs `task` over the blocks of `blocks` (see [`RowBlocks`]): `task(rows, worker)`.
    fn run_rows(&self, blocks: RowBlocks, task: &(dyn Fn(Range<usize>, WorkerIndex) + Sync)) {
        self.run(blocks.count(), &|index, worker| {
            task(blocks.block(index), worker)
        });
    }
}

/// Runs every task on the calling thread, in order, as worker 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Executor for Serial {
    fn workers(&self) -> usize {
        1
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync)) {
        run_inline(tasks, WorkerIndex(0), task);
    }
}

/// Runs all tasks in order on the calling thread as `worker` (small jobs, nested calls).
pub fn run_inline(
    tasks: usize,
    worker: WorkerIndex,
    task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync),
) {
    for index in 0..tasks {
        task(TaskIndex(index), worker);
    }
}

/// A split of `rows` rows into contiguous blocks of whole `granule`s (the last block may be
/// shorter when `rows` is not a multiple), as even as possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowBlocks {
    rows: usize,
    granule: usize,
    units: usize,
    count: usize,
}

impl RowBlocks {
    /// Blocks per worker [`RowBlocks::for_workers`] aims for: enough for dynamic claiming to even
    /// out unequal workers, few enough to keep the per-task cost (one atomic, one call) small.
    pub const BLOCKS_PER_WORKER: usize = 2;

    /// At most `max_blocks` blocks of `rows` rows, each a multiple of `granule` rows (0 is
    /// treated as 1). Never more blocks than granules, never zero blocks unless `rows` is 0.
    pub const fn new(rows: usize, granule: usize, max_blocks: usize) -> Self {
        let granule = if granule == 0 { 1 } else { granule };
        let units = rows.div_ceil(granule);
        let max_blocks = if max_blocks == 0 { 1 } else { max_blocks };
        let count = if units < max_blocks {
            units
        } else {
            max_blocks
        };
        Self {
            rows,
            granule,
            units,
            count,
        }
    }

    /// A split sized for `executor`: [`Self::BLOCKS_PER_WORKER`] blocks per worker, one block
    /// with a single worker.
    pub fn for_workers(rows: usize, granule: usize, executor: &dyn Executor) -> Self {
        let workers = executor.workers();
        let max = if workers <= 1 {
            1
        } else {
            workers * Self::BLOCKS_PER_WORKER
        };
        Self::new(rows, granule, max)
    }

    /// Number of blocks (tasks).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The rows of block `index` (empty past the end).
    pub fn block(&self, index: TaskIndex) -> Range<usize> {
        let index = index.0.min(self.count);
        let unit = |i: usize| {
            if self.count == 0 {
                0
            } else {
                // i ≤ count ≤ units, so the product fits whenever `units * count` does; widen
                // to u128 to be safe for any sizes.
                (i as u128 * self.units as u128 / self.count as u128) as usize
            }
        };
        let start = (unit(index) * self.granule).min(self.rows);
        let end = (unit(index + 1) * self.granule).min(self.rows);
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn row_blocks_cover_every_row_once_in_whole_granules() {
        for rows in [0, 1, 7, 16, 17, 576, 1536, 49152, 1000] {
            for granule in [0, 1, 4, 16, 64] {
                for max in [0, 1, 2, 3, 8, 64, 10_000] {
                    let blocks = RowBlocks::new(rows, granule, max);
                    let mut next = 0;
                    for i in 0..blocks.count() {
                        let range = blocks.block(TaskIndex(i));
                        assert_eq!(range.start, next, "{rows} {granule} {max}");
                        assert!(!range.is_empty(), "{rows} {granule} {max} block {i}");
                        if range.end != rows {
                            assert_eq!(range.len() % granule.max(1), 0);
                        }
                        next = range.end;
                    }
                    assert_eq!(next, rows);
                    assert!(blocks.count() <= max.max(1));
                    assert!(blocks.block(TaskIndex(blocks.count())).is_empty());
                    assert!(blocks.block(TaskIndex(usize::MAX)).is_empty());
                }
            }
        }
        // As even as possible: 10 granules over 4 blocks are 2, 3, 2, 3 granules.
        let blocks = RowBlocks::new(40, 4, 4);
        let lens: Vec<usize> = (0..4).map(|i| blocks.block(TaskIndex(i)).len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 40);
        assert!(lens.iter().all(|&l| l == 8 || l == 12), "{lens:?}");
    }

    #[test]
    fn serial_runs_every_task_in_order() {
        let seen = std::sync::Mutex::new(Vec::new());
        Serial.run(5, &|task, worker| {
            assert_eq!(worker, WorkerIndex(0));
            seen.lock().unwrap().push(task.0);
        });
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4]);
        let count = AtomicUsize::new(0);
        Serial.run(0, &|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert_eq!(RowBlocks::for_workers(100, 4, &Serial).count(), 1);
    }
}
