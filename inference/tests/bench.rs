//! The shared benchmark core on a tiny generated model with a scripted clock: the figures it
//! reports are exactly the rates implied by the clock readings, and it reads the clock only
//! around the timed runs.

mod support;
#[path = "support/tiny_q8.rs"]
mod tiny_q8;

use std::cell::Cell;
use tiny_q8::tiny_model;
use ward_inference::bench::{
    self, BenchError, BenchReport, Settings, Stats, measure_slots, measure_threads,
};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::parallel::{Executor, Serial};

fn model() -> Model {
    let bytes = tiny_model();
    let gguf = Gguf::parse(&bytes).unwrap();
    Model::from_gguf(&gguf, Kernels::detect()).unwrap()
}

/// Clock readings for runs lasting `durations` nanoseconds each: a start and an end reading per
/// run, with an untimed gap between runs.
fn readings(durations: &[u64]) -> Vec<u64> {
    let mut now = 5_000;
    let mut out = Vec::new();
    for &d in durations {
        out.push(now);
        now += d;
        out.push(now);
        now += 777;
    }
    out
}

/// A clock that returns `readings` in order, and counts how many were taken.
struct Script {
    readings: Vec<u64>,
    next: Cell<usize>,
}

impl Script {
    fn new(durations: &[u64]) -> Self {
        Self {
            readings: readings(durations),
            next: Cell::new(0),
        }
    }

    fn now(&self) -> u64 {
        let i = self.next.get();
        self.next.set(i + 1);
        *self
            .readings
            .get(i)
            .expect("the benchmark read the clock more often than it has runs")
    }

    fn all_read(&self) -> bool {
        self.next.get() == self.readings.len()
    }
}

fn close(stats: Stats, mean: f64, sd: f64) -> bool {
    (stats.mean - mean).abs() < 1e-6 * mean.abs().max(1.0) && (stats.sd - sd).abs() < 1e-6
}

const MS: u64 = 1_000_000;

#[test]
fn thread_figures_are_the_rates_of_the_timed_runs() {
    let model = model();
    let settings = Settings {
        prompt: 8,
        generate: 4,
        repetitions: 2,
    };
    // Warm-up, then two timed runs: prompt, then decode.
    let script = Script::new(&[999, MS, 2 * MS, 3, 4 * MS, 8 * MS]);
    let clock = || script.now();
    let figures = measure_threads(&model, &Serial, &clock, settings).unwrap();
    assert!(script.all_read());
    assert_eq!(figures.threads, 1);
    // 8 tokens in 1 ms and 2 ms: 8000 and 4000 tok/s.
    assert!(
        close(figures.prompt, 6000.0, 2000.0 * 2f64.sqrt()),
        "{figures:?}"
    );
    // 4 tokens in 4 ms and 8 ms: 1000 and 500 tok/s.
    assert!(
        close(figures.decode, 750.0, 250.0 * 2f64.sqrt()),
        "{figures:?}"
    );
}

#[test]
fn slot_figures_are_aggregate_rates_over_all_slots() {
    let model = model();
    let settings = Settings {
        prompt: 8,
        generate: 4,
        repetitions: 2,
    };
    let script = Script::new(&[1, 3 * MS, 6 * MS]);
    let clock = || script.now();
    let figures = measure_slots(&model, &Serial, &clock, settings, 3).unwrap();
    assert!(script.all_read());
    assert_eq!(figures.slots, 3);
    // 3 slots × 4 steps = 12 tokens in 3 ms and 6 ms: 4000 and 2000 tok/s.
    assert!(
        close(figures.decode, 3000.0, 1000.0 * 2f64.sqrt()),
        "{figures:?}"
    );
}

#[test]
fn report_of_measured_figures_prints_table_and_json() {
    let model = model();
    let settings = Settings {
        prompt: 8,
        generate: 4,
        repetitions: 1,
    };
    let threads_script = Script::new(&[1, 2 * MS, 1, 4 * MS]);
    let slots_script = Script::new(&[1, 4 * MS]);
    let mut report = BenchReport::new(&model, settings, 1);
    report
        .threads
        .push(measure_threads(&model, &Serial, &|| threads_script.now(), settings).unwrap());
    report
        .slots
        .push(measure_slots(&model, &Serial, &|| slots_script.now(), settings, 2).unwrap());
    let mut json = String::new();
    report.write_json(&mut json).unwrap();
    assert_eq!(
        json,
        "{\"threads\":{\"1\":{\"prompt_tps\":4000.0,\"decode_tps\":1000.0}},\
         \"slots\":{\"2\":2000.0},\"threads_for_slots\":1}"
    );
    let mut table = String::new();
    report.write_table(&mut table, "tiny").unwrap();
    assert!(
        table.contains("1        pp8              4000.0        0.0\n"),
        "{table}"
    );
    assert!(
        table.contains("1        tg4              1000.0        0.0\n"),
        "{table}"
    );
    assert!(
        table.contains("2              2000.0        0.0\n"),
        "{table}"
    );
}

#[test]
fn a_clock_that_does_not_advance_is_an_error() {
    let model = model();
    let settings = Settings {
        prompt: 4,
        generate: 2,
        repetitions: 1,
    };
    let frozen = || 42u64;
    assert_eq!(
        measure_threads(&model, &Serial, &frozen, settings),
        Err(BenchError::ClockStalled { test: "prompt" })
    );
    assert_eq!(
        measure_slots(&model, &Serial, &frozen, settings, 2),
        Err(BenchError::ClockStalled {
            test: "batched decode"
        })
    );
}

#[test]
fn zero_lengths_and_slots_are_refused() {
    let model = model();
    let clock = || 0u64;
    let good = Settings {
        prompt: 4,
        generate: 2,
        repetitions: 1,
    };
    for bad in [
        Settings { prompt: 0, ..good },
        Settings {
            generate: 0,
            ..good
        },
        Settings {
            repetitions: 0,
            ..good
        },
    ] {
        assert!(matches!(
            measure_threads(&model, &Serial, &clock, bad),
            Err(BenchError::BadSettings(_))
        ));
    }
    assert!(matches!(
        measure_slots(&model, &Serial, &clock, good, 0),
        Err(BenchError::BadSettings(_))
    ));
}

#[test]
fn run_measures_every_executor_then_every_slot_count_in_order() {
    let model = model();
    let settings = Settings {
        prompt: 4,
        generate: 2,
        repetitions: 1,
    };
    // Two executors (prompt and decode, warm-up and one timed run each), then slot counts 2
    // and 1 (warm-up and one timed run each).
    let script = Script::new(&[1, MS, 1, 2 * MS, 1, 4 * MS, 1, 8 * MS, 1, MS, 1, 2 * MS]);
    let executors: [&dyn Executor; 2] = [&Serial, &Serial];
    let report = bench::run(
        &model,
        &|| script.now(),
        settings,
        &executors,
        &Serial,
        &[2, 1],
    )
    .unwrap();
    assert!(script.all_read());
    assert_eq!(report.threads_for_slots, 1);
    let rates: Vec<(f64, f64)> = report
        .threads
        .iter()
        .map(|t| (t.prompt.mean, t.decode.mean))
        .collect();
    // 4 prompt tokens in 1 ms and 4 ms, 2 decoded tokens in 2 ms and 8 ms.
    assert_eq!(rates, [(4000.0, 1000.0), (1000.0, 250.0)]);
    let slots: Vec<(usize, f64)> = report
        .slots
        .iter()
        .map(|s| (s.slots, s.decode.mean))
        .collect();
    // 2 slots x 2 steps in 1 ms, 1 slot x 2 steps in 2 ms.
    assert_eq!(slots, [(2, 4000.0), (1, 1000.0)]);
}
