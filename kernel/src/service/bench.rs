//! The in-enclave benchmark (`bench` in the deployment configuration): once the model is
//! loaded, the same measurements as `ward bench` (`ward_inference::bench`) on the enclave's own
//! CPUs — prompt processing and decoding on one CPU and on all of them, then aggregate batched
//! decoding at each configured busy-slot count on all of them — timed by the caller's clock (the
//! TSC in the kernel). The service prints the table on the serial console and then serves.
//!
//! The benchmark allocates its own context and batcher beside the serving slots, so it runs
//! only when they fit the free heap (the same accounting as the load-time check).

use super::memory::{BatcherMemory, InsufficientMemory, SlotsFit};
use alloc::vec::Vec;
use core::fmt;
use ward_attestation::config::BenchConfig;
use ward_inference::batcher::BatcherConfig;
use ward_inference::bench::{BenchError, BenchReport, Clock, Settings, slot_batcher_config};
use ward_inference::model::Model;
use ward_inference::parallel::{Executor, Serial};

/// Why the benchmark produced no report.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchRunError {
    /// Its context or batcher would not fit beside the serving slots.
    Memory(InsufficientMemory),
    /// A measurement failed.
    Measure(BenchError),
}

impl fmt::Display for BenchRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(shortfall) => write!(f, "not enough memory: {shortfall}"),
            Self::Measure(error) => write!(f, "{error}"),
        }
    }
}

impl From<BenchError> for BenchRunError {
    fn from(error: BenchError) -> Self {
        Self::Measure(error)
    }
}

/// The benchmark's largest allocation, as batcher sizes: the decode context of the thread
/// tests (one row set of `prompt` rows) or the batcher of the largest slot count.
fn memory_needed(model: &Model, config: &BenchConfig, settings: &Settings) -> BatcherMemory {
    let (prompt, generate) = (settings.prompt, settings.generate);
    let context = BatcherMemory::of(
        model.config(),
        &BatcherConfig {
            slots: 1,
            capacity: prompt.max(generate),
            prefill_chunk: prompt,
        },
    );
    let most_slots = config.slots().iter().copied().max().unwrap_or(0) as usize;
    let batcher = BatcherMemory::of(
        model.config(),
        &slot_batcher_config(settings, most_slots.max(1)),
    );
    if most_slots > 0 && batcher.required() > context.required() {
        batcher
    } else {
        context
    }
}

/// Runs `config` on `model`: the thread tests on one CPU and on `executor`'s CPUs (when more
/// than one), the slot tests on `executor`. `free` is the heap free now.
pub fn run(
    model: &Model,
    executor: &dyn Executor,
    clock: &dyn Clock,
    config: &BenchConfig,
    free: u64,
) -> Result<BenchReport, BenchRunError> {
    let settings = Settings {
        prompt: config.prompt as usize,
        generate: config.generate as usize,
        repetitions: config.repetitions as usize,
    };
    memory_needed(model, config, &settings)
        .check(free)
        .map_err(BenchRunError::Memory)?;
    let one_cpu: &dyn Executor = &Serial;
    let executors: &[&dyn Executor] = if executor.workers() > 1 {
        &[one_cpu, executor]
    } else {
        &[one_cpu]
    };
    let slots: Vec<usize> = config.slots().iter().map(|&s| s as usize).collect();
    Ok(ward_inference::bench::run(
        model, clock, settings, executors, executor, &slots,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use core::cell::Cell;
    use ward_inference::gguf::Gguf;
    use ward_inference::kernels::Kernels;
    use ward_inference::parallel::ThreadPool;
    use ward_tools::tiny_model::{TinyModelSpec, tiny_model_gguf};

    fn bench_config(slots: &[u32]) -> BenchConfig {
        let mut config = BenchConfig::default().with_slots(slots, 64).unwrap();
        config.prompt = 8;
        config.generate = 4;
        config.repetitions = 2;
        config
    }

    /// A clock that advances 1 ms at every reading: every timed run takes 1 ms.
    struct Ticking(Cell<u64>);

    impl Clock for Ticking {
        fn now_ns(&self) -> u64 {
            let now = self.0.get() + 1_000_000;
            self.0.set(now);
            now
        }
    }

    #[test]
    fn measures_one_and_all_cpus_and_every_slot_count() {
        let bytes = tiny_model_gguf(&TinyModelSpec::default());
        let model = Model::from_gguf(&Gguf::parse(&bytes).unwrap(), Kernels::detect()).unwrap();
        let pool = ThreadPool::new(2).unwrap();
        let clock = Ticking(Cell::new(0));
        let report = run(&model, &pool, &clock, &bench_config(&[1, 3]), 1 << 30).unwrap();
        let threads: alloc::vec::Vec<usize> = report.threads.iter().map(|t| t.threads).collect();
        assert_eq!(threads, [1, 2]);
        // 8 prompt tokens in 1 ms, 4 decoded tokens in 1 ms, 3 slots × 4 tokens in 1 ms.
        assert_eq!(report.threads[0].prompt.mean, 8000.0);
        assert_eq!(report.threads[1].decode.mean, 4000.0);
        let slots: alloc::vec::Vec<(usize, f64)> = report
            .slots
            .iter()
            .map(|s| (s.slots, s.decode.mean))
            .collect();
        assert_eq!(slots, [(1, 4000.0), (3, 12000.0)]);
        assert_eq!(report.threads_for_slots, 2);
        let mut table = String::new();
        report.write_table(&mut table, "tiny").unwrap();
        assert!(table.contains("pp8"), "{table}");
        assert!(table.contains("batched decode on 2 threads"), "{table}");
    }

    #[test]
    fn one_cpu_measures_once_and_memory_is_checked_first() {
        let bytes = tiny_model_gguf(&TinyModelSpec::default());
        let model = Model::from_gguf(&Gguf::parse(&bytes).unwrap(), Kernels::detect()).unwrap();
        let clock = Ticking(Cell::new(0));
        let report = run(&model, &Serial, &clock, &bench_config(&[]), 1 << 30).unwrap();
        assert_eq!(report.threads.len(), 1);
        assert!(report.slots.is_empty());
        let refused = run(&model, &Serial, &clock, &bench_config(&[64]), 1 << 20);
        assert!(
            matches!(refused, Err(BenchRunError::Memory(m)) if m.slots == 64),
            "{refused:?}"
        );
    }
}
