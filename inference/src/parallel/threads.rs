//! The host executor: `workers - 1` std threads plus the calling thread, over a [`Board`].
//!
//! Idle threads spin on the board's generation for [`SPIN_BEFORE_PARK`] after their last job
//! (so back-to-back runs of one forward pass cost microseconds, not a wake-up), then park; every
//! publish unparks them. `unpark` keeps a token, so a publish racing with a thread going to
//! sleep is never lost — and even if a thread slept through a job, the publisher would do the
//! work itself (see [`Board`]).
//!
//! A panic in a task is caught on whichever thread ran it, the job still completes (no thread is
//! left inside it), and the first panic is resumed on the caller of `run`.

use super::board::{Board, MAX_HELPERS};
use super::{Executor, TaskIndex, WorkerIndex, run_inline};
use std::any::Any;
use std::boxed::Box;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};
use std::vec::Vec;

/// How long an idle worker spins before parking.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);

/// Pauses (each followed by a look at the board) between two readings of the clock.
const SPINS_PER_CLOCK_READ: usize = 64;

struct Shared {
    board: Board,
    shutdown: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

std::thread_local! {
    /// The pool (by its shared state's address) and worker index this thread is running a task
    /// for, if any: used to run nested calls inline.
    static CURRENT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// A fixed pool of std threads; see the module documentation.
pub struct ThreadPool {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    /// Serialises callers from different threads (the board would too, by spinning).
    callers: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `workers` workers in total: the calling thread of each `run` plus
    /// `workers - 1` threads (0 is treated as 1; at most the board's limit).
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let helpers = workers.clamp(1, MAX_HELPERS + 1) - 1;
        let shared = Arc::new(Shared {
            board: Board::new(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut pool = Self {
            shared,
            threads: Vec::with_capacity(helpers),
            handles: Vec::with_capacity(helpers),
            callers: Mutex::new(()),
        };
        for index in 1..=helpers {
            let shared = Arc::clone(&pool.shared);
            let handle = thread::Builder::new()
                .name(std::format!("ward-worker-{index}"))
                .spawn(move || worker_loop(&shared, WorkerIndex(index)))?;
            pool.threads.push(handle.thread().clone());
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// A pool with one worker per available CPU.
    pub fn with_available_parallelism() -> std::io::Result<Self> {
        Self::new(thread::available_parallelism().map_or(1, usize::from))
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

fn worker_loop(shared: &Shared, worker: WorkerIndex) {
    let id = core::ptr::from_ref(shared) as usize;
    CURRENT.with(|current| current.set(Some((id, worker.0))));
    let mut seen = shared.board.generation();
    let mut last_work = Instant::now();
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        if shared.board.help(&mut seen, worker) {
            last_work = Instant::now();
            continue;
        }
        if last_work.elapsed() < SPIN_BEFORE_PARK {
            // Look at the board after every pause: one `pause` takes ~100 cycles or more on
            // recent Intel cores, so pausing 64 times between looks made each job wait
            // microseconds for its second worker — hundreds of times per forward pass.
            for _ in 0..SPINS_PER_CLOCK_READ {
                if shared.board.generation() != seen {
                    break;
                }
                std::hint::spin_loop();
            }
        } else {
            thread::park();
            last_work = Instant::now();
        }
    }
}

impl Executor for ThreadPool {
    fn workers(&self) -> usize {
        self.threads.len() + 1
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync)) {
        if let Some((pool, worker)) = CURRENT.with(Cell::get)
            && pool == self.id()
        {
            // Nested: this thread is already one of our workers inside a task.
            run_inline(tasks, WorkerIndex(worker), task);
            return;
        }
        if tasks <= 1 || self.threads.is_empty() {
            run_inline(tasks, WorkerIndex(0), task);
            return;
        }
        let _caller = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = &*self.shared;
        let guarded = |index: TaskIndex, worker: WorkerIndex| {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task(index, worker))) {
                let mut slot = shared.panic.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(payload);
            }
        };
        let previous = CURRENT.with(|current| current.replace(Some((self.id(), 0))));
        shared.board.run(tasks, WorkerIndex(0), &guarded, || {
            for thread in &self.threads {
                thread.unpark();
            }
        });
        CURRENT.with(|current| current.set(previous));
        let payload = shared
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(payload) = payload {
            resume_unwind(payload);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for thread in &self.threads {
            thread.unpark();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    fn sum_of_squares(executor: &dyn Executor, data: &[u64], blocks: usize) -> u64 {
        let partial: Vec<AtomicU64> = (0..blocks).map(|_| AtomicU64::new(0)).collect();
        let split = super::super::RowBlocks::new(data.len(), 8, blocks);
        executor.run_rows(split, &|rows, _| {
            let index = split_index(&split, rows.start);
            let sum: u64 = data[rows]
                .iter()
                .map(|x| x.wrapping_mul(*x))
                .fold(0, u64::wrapping_add);
            partial[index].store(sum, Ordering::Relaxed);
        });
        partial
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    fn split_index(split: &super::super::RowBlocks, start: usize) -> usize {
        (0..split.count())
            .find(|&i| split.block(TaskIndex(i)).start == start)
            .unwrap()
    }

    #[test]
    fn results_equal_serial() {
        let data: Vec<u64> = (0..100_003u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let expected = sum_of_squares(&super::super::Serial, &data, 1);
        for workers in [1, 2, 3, 8] {
            let pool = ThreadPool::new(workers).unwrap();
            assert_eq!(pool.workers(), workers);
            for blocks in [1, 2, 7, 64] {
                assert_eq!(
                    sum_of_squares(&pool, &data, blocks),
                    expected,
                    "{workers} {blocks}"
                );
            }
        }
    }

    #[test]
    fn many_tiny_tasks_and_many_runs_each_task_once() {
        let pool = ThreadPool::new(4).unwrap();
        for round in 0..2_000usize {
            let tasks = round % 37;
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, &|task, worker| {
                assert!(worker.0 < 4);
                hits[task.0].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
        let hits: Vec<AtomicUsize> = (0..100_000).map(|_| AtomicUsize::new(0)).collect();
        pool.run(hits.len(), &|task, _| {
            hits[task.0].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn worker_indices_are_exclusive_while_a_task_runs() {
        let pool = ThreadPool::new(3).unwrap();
        let busy: Vec<AtomicBool> = (0..3).map(|_| AtomicBool::new(false)).collect();
        let used = Mutex::new(HashSet::new());
        for _ in 0..50 {
            pool.run(64, &|_, worker| {
                assert!(!busy[worker.0].swap(true, Ordering::AcqRel), "index shared");
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                used.lock().unwrap().insert(worker.0);
                busy[worker.0].store(false, Ordering::Release);
            });
        }
        assert!(used.lock().unwrap().iter().all(|&w| w < 3));
    }

    #[test]
    fn helpers_take_part_after_parking() {
        let pool = ThreadPool::new(2).unwrap();
        // Long enough for the helper to park.
        std::thread::sleep(SPIN_BEFORE_PARK * 5);
        let threads = Mutex::new(HashSet::new());
        for _ in 0..20 {
            pool.run(2, &|_, _| {
                threads.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(Duration::from_millis(2));
            });
            if threads.lock().unwrap().len() == 2 {
                break;
            }
        }
        assert_eq!(
            threads.lock().unwrap().len(),
            2,
            "the parked helper never joined"
        );
    }

    #[test]
    fn nested_runs_execute_inline_on_the_same_worker() {
        let pool = ThreadPool::new(3).unwrap();
        let inner_total = AtomicUsize::new(0);
        pool.run(6, &|_, outer| {
            pool.run(5, &|_, inner| {
                assert_eq!(inner, outer);
                inner_total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner_total.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn concurrent_callers_are_serialised() {
        let pool = ThreadPool::new(3).unwrap();
        let total = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        pool.run(10, &|_, _| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 200 * 10);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_still_works() {
        let pool = ThreadPool::new(2).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.run(16, &|task, _| {
                if task.0 == 11 {
                    panic!("task 11 failed");
                }
            });
        }));
        let payload = outcome.expect_err("the panic must reach the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 11 failed"));
        let count = AtomicUsize::new(0);
        pool.run(16, &|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 16);
    }
}
