//! The whole benchmark in one call, for callers that hold every executor up front (the
//! enclave's boot option, `ward bench`).

use super::{BenchError, BenchReport, Clock, Settings, measure_slots, measure_threads};
use crate::model::Model;
use crate::parallel::Executor;

/// Prompt and decode speed on each of `executors` (one per thread count, labelled with its
/// worker count), then aggregate decode at each of `slots` busy-slot counts on
/// `slot_executor`, in that order.
pub fn run(
    model: &Model,
    clock: &dyn Clock,
    settings: Settings,
    executors: &[&dyn Executor],
    slot_executor: &dyn Executor,
    slots: &[usize],
) -> Result<BenchReport, BenchError> {
    let mut report = BenchReport::new(model, settings, slot_executor.workers());
    for executor in executors {
        report
            .threads
            .push(measure_threads(model, *executor, clock, settings)?);
    }
    for &count in slots {
        report
            .slots
            .push(measure_slots(model, slot_executor, clock, settings, count)?);
    }
    Ok(report)
}
