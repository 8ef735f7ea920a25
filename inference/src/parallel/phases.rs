//! Dependent phases in one run of an [`Executor`]: every task of a phase starts its work only
//! after every task of the phases before it has finished. A phase boundary inside a run is one
//! shared counter the workers wait on, where a boundary between two runs also costs publishing
//! the job, waking and joining the workers, and the serial code in between.
//!
//! Waiting cannot deadlock because executors start tasks in index order (see [`Executor`]): the
//! earlier phases' tasks were all started before any task that waits for them, by workers that
//! are running them, and those wait only for phases earlier still.

use super::{Executor, TaskIndex, WorkerIndex};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Most phases one run takes.
pub const MAX_PHASES: usize = 4;

/// One phase: `task(i, worker)` for every `i` in `0..tasks`.
#[derive(Clone, Copy)]
pub struct Phase<'a> {
    pub tasks: usize,
    pub task: &'a (dyn Fn(TaskIndex, WorkerIndex) + Sync),
}

/// Counts a phase's task as finished when dropped, so a task that panics (the host pool catches
/// it and re-raises it to the caller) does not leave the later phases waiting forever.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Runs `phases` (at most [`MAX_PHASES`]) in order in one run of `executor`. When it returns,
/// every task of every phase has finished and its writes are visible to the caller.
pub fn run_phases(executor: &dyn Executor, phases: &[Phase<'_>]) {
    let phases = &phases[..phases.len().min(MAX_PHASES)];
    let mut first = [0usize; MAX_PHASES + 1];
    for (i, phase) in phases.iter().enumerate() {
        first[i + 1] = first[i] + phase.tasks;
    }
    let finished: [AtomicUsize; MAX_PHASES] = [const { AtomicUsize::new(0) }; MAX_PHASES];
    executor.run(first[phases.len()], &|task, worker| {
        let Some(p) = (0..phases.len()).find(|&p| task.0 < first[p + 1]) else {
            return;
        };
        for (earlier, done) in phases[..p].iter().zip(&finished) {
            // Acquire: pairs with the release of every finished task, so their writes are seen.
            while done.load(Ordering::Acquire) < earlier.tasks {
                core::hint::spin_loop();
            }
        }
        let _finished = Finished(&finished[p]);
        (phases[p].task)(TaskIndex(task.0 - first[p]), worker);
    });
}

#[cfg(test)]
mod tests {
    use super::super::{Serial, ThreadPool};
    use super::*;
    use std::vec::Vec;

    /// Each phase's tasks check that every task of the phase before has finished.
    fn phases_see_earlier_phases_finished(executor: &dyn Executor) {
        let counts = [5usize, 0, 7, 3];
        let done: Vec<AtomicUsize> = counts.iter().map(|_| AtomicUsize::new(0)).collect();
        let violations = AtomicUsize::new(0);
        let tasks: Vec<_> = (0..counts.len())
            .map(|p| {
                let (done, violations, counts) = (&done, &violations, &counts);
                move |_: TaskIndex, _: WorkerIndex| {
                    for q in 0..p {
                        if done[q].load(Ordering::Relaxed) != counts[q] {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for _ in 0..500 {
                        core::hint::spin_loop();
                    }
                    done[p].fetch_add(1, Ordering::Relaxed);
                }
            })
            .collect();
        let phases: Vec<Phase<'_>> = tasks
            .iter()
            .zip(counts)
            .map(|(task, tasks)| Phase { tasks, task })
            .collect();
        for _ in 0..200 {
            for d in &done {
                d.store(0, Ordering::Relaxed);
            }
            run_phases(executor, &phases);
            for (d, &count) in done.iter().zip(&counts) {
                assert_eq!(d.load(Ordering::Relaxed), count);
            }
        }
        assert_eq!(violations.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn phases_run_in_order_on_every_executor() {
        phases_see_earlier_phases_finished(&Serial);
        for workers in [2, 3, 4] {
            phases_see_earlier_phases_finished(&ThreadPool::new(workers).unwrap());
        }
    }
}
