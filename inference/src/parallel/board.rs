//! The job board every parallel executor shares: one published job at a time, whose tasks are
//! claimed dynamically by whichever workers show up.
//!
//! Workers are *helpers*, never required: the publisher claims tasks too and the job is done
//! when every task has been claimed and every helper that joined has left. So a worker that is
//! asleep, slow to wake or descheduled only costs speed, never correctness — there is no
//! barrier that waits for a particular worker, and no lost wake-up can hang a run.
//!
//! One word, `state`, holds the generation (bumped per job), an `OPEN` flag and the number of
//! helpers inside the current job. A helper joins with one compare-exchange that checks the
//! generation and the flag and increments the count together, so once the publisher clears
//! `OPEN` nobody new can join, and once the count drops to zero nobody is still using the job.
//!
//! Memory ordering: the publisher writes the job, then stores `state` (release); a helper's
//! successful join is an acquire of that store, so it sees the job. A helper's leave is a
//! release decrement; the publisher's acquire load of a zero count makes every task's writes
//! visible to the caller of `run` when it returns.

use super::{TaskIndex, WorkerIndex};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Bits of `state` counting the helpers inside the current job.
const ACTIVE_MASK: u64 = 0xffff;
/// The current job accepts helpers.
const OPEN: u64 = 1 << 16;
/// The generation starts at this bit.
const GENERATION_SHIFT: u32 = 17;

/// Most helpers a board supports (the active count's width).
pub const MAX_HELPERS: usize = ACTIVE_MASK as usize;

/// A task with its borrow's lifetime erased; see the SAFETY argument in [`Board::run`].
type ErasedTask = *const (dyn Fn(TaskIndex, WorkerIndex) + Sync + 'static);

struct Job {
    task: Option<ErasedTask>,
    tasks: usize,
}

/// The shared state of one executor: see the module documentation.
pub struct Board {
    state: AtomicU64,
    next: AtomicUsize,
    /// Held by the one publisher while its job is out.
    publishing: AtomicBool,
    job: UnsafeCell<Job>,
}

// SAFETY: `job` is written only by the publisher while no helper is inside a job (the
// `publishing` lock excludes other publishers; a closed job with a zero count excludes helpers)
// and read only by helpers that joined the open job, after the release/acquire pair on `state`.
// The erased task is `Sync`, so calling it from several threads is allowed.
unsafe impl Sync for Board {}
// SAFETY: the raw task pointer is only dereferenced under the protocol above; the board owns
// nothing thread-bound.
unsafe impl Send for Board {}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    /// An idle board.
    pub const fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            publishing: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                task: None,
                tasks: 0,
            }),
        }
    }

    /// The current generation: it changes each time a job is published. Idle workers poll it
    /// (or sleep until told) and call [`Self::help`] when it moves.
    ///
    /// Sequentially consistent, so a worker that announces "going to sleep" (a SeqCst store)
    /// and then reads the generation pairs with a publisher that stores the generation and then
    /// reads the announcement: at least one of them sees the other.
    pub fn generation(&self) -> u64 {
        self.state.load(Ordering::SeqCst) >> GENERATION_SHIFT
    }

    /// Runs `task` for every index in `0..tasks`, on the calling thread as worker `publisher`
    /// and on every helper that joins, and returns when all have finished. `wake` is called
    /// once the job is open, to rouse sleeping helpers.
    ///
    /// Only one job is out at a time: a second publisher waits here until the first is done.
    /// The caller must not call this from inside one of its own tasks (the executors detect
    /// nesting before reaching the board and run such calls inline).
    pub fn run(
        &self,
        tasks: usize,
        publisher: WorkerIndex,
        task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync),
        wake: impl FnOnce(),
    ) {
        while self
            .publishing
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // Lifetime erasure: the pointer is stored in the board only until this function
        // returns, and it returns only after the job is closed and no helper is inside it.
        // SAFETY: only the lifetime changes (same fat-pointer layout), and nobody dereferences
        // the pointer after `task`'s borrow ends (see above).
        let erased: ErasedTask = unsafe {
            core::mem::transmute::<*const (dyn Fn(TaskIndex, WorkerIndex) + Sync + '_), ErasedTask>(
                task,
            )
        };
        // SAFETY: we hold `publishing`, and the previous job was closed with a zero helper count
        // before its publisher released the lock, so nothing reads `job` now.
        unsafe {
            *self.job.get() = Job {
                task: Some(erased),
                tasks,
            }
        };
        self.next.store(0, Ordering::Relaxed);
        let generation = (self.state.load(Ordering::Relaxed) >> GENERATION_SHIFT).wrapping_add(1);
        // SeqCst: idle helpers announce "going to sleep" and then re-read the state; with both
        // sides sequentially consistent, either the helper sees this job or `wake` sees it asleep.
        self.state
            .store((generation << GENERATION_SHIFT) | OPEN, Ordering::SeqCst);
        wake();
        self.claim(publisher, task, tasks);
        // Every task is claimed: close the job to newcomers, then wait for the helpers inside to
        // finish the tasks they claimed.
        self.state.fetch_and(!OPEN, Ordering::AcqRel);
        while self.state.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
            core::hint::spin_loop();
        }
        // SAFETY: closed with no helper inside: nobody reads `job`.
        unsafe { (*self.job.get()).task = None };
        self.publishing.store(false, Ordering::Release);
    }

    /// Joins the current job as `worker` if it is newer than `seen` and still open, claims
    /// tasks until none are left, and leaves. Returns whether the generation had moved (so the
    /// caller counts it as activity, even if the job was already closed).
    pub fn help(&self, seen: &mut u64, worker: WorkerIndex) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        let generation = state >> GENERATION_SHIFT;
        if generation == *seen {
            return false;
        }
        *seen = generation;
        loop {
            if state & OPEN == 0 || state >> GENERATION_SHIFT != generation {
                // Finished without us, or a newer job already: the caller looks again.
                return true;
            }
            if state & ACTIVE_MASK == ACTIVE_MASK {
                return true;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(current) => state = current,
            }
        }
        // SAFETY: we joined the open job (count incremented under the matching generation with
        // acquire ordering), so the publisher wrote `job` before and will not touch it until we
        // leave.
        let job = unsafe { &*self.job.get() };
        if let Some(task) = job.task {
            // SAFETY: the task outlives the job (see `run`), and we are inside the job.
            let task = unsafe { &*task };
            self.claim(worker, task, job.tasks);
        }
        self.state.fetch_sub(1, Ordering::Release);
        true
    }

    fn claim(
        &self,
        worker: WorkerIndex,
        task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync),
        tasks: usize,
    ) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= tasks {
                return;
            }
            task(TaskIndex(index), worker);
        }
    }
}
