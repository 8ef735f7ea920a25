//! `ward bench`: the engine's speed on the host, measured like llama.cpp's `llama-bench`:
//! prompt processing (`--prompt N` tokens in one batch into an empty context) and decoding
//! (`--gen N` tokens one at a time from an empty context), in tokens per second, averaged over
//! `--repetitions` runs after a warm-up. The measurement itself is `ward_inference::bench`,
//! which the enclave's benchmark boot option runs too.
//!
//! `--threads` takes a comma-separated list so that thread counts can be compared in one run;
//! each count runs on its own host thread pool (the calling thread plus `N - 1` workers), the
//! matrix products split by rows across them.
//!
//! `--slots 1,2,4,8` measures the batcher: aggregate decode tokens/s with that many busy slots,
//! every step one batched forward pass over all of them, on `--threads-for-slots` threads
//! (default the largest `--threads`).
//!
//! `--llama-bench PATH` then runs llama.cpp's `llama-bench` (PATH) and `llama-batched-bench`
//! (beside it) on the same file with the same settings, and prints their figures and Ward's
//! ratios to them.
//!
//! `--json` prints one object, the contract scripts rely on:
//! `{"threads":{"1":{"prompt_tps":F,"decode_tps":F}},"slots":{"1":F,"8":F},"threads_for_slots":N}`,
//! plus `"llama_cpp"` and `"ratios"` keys with `--llama-bench` (see `bench/compare.rs`).

mod compare;
mod llama_cpp;

use super::CommandError;
use super::generate::{kernels_for, parse_simd};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use ward_inference::bench::{self, BenchReport, Settings};
use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::Gguf;
use ward_inference::model::Model;
use ward_inference::parallel::{Executor, ThreadPool};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model to measure.
    #[arg(long)]
    model: PathBuf,
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Busy-slot counts for the batched decode test, comma-separated (none: skipped).
    #[arg(long, value_delimiter = ',')]
    slots: Vec<usize>,
    /// Threads for the batched decode test (default: the largest `--threads`).
    #[arg(long)]
    threads_for_slots: Option<usize>,
    /// Prompt length for the prompt-processing test.
    #[arg(long, default_value_t = 128)]
    prompt: usize,
    /// Tokens generated in the decode test.
    #[arg(long = "gen", default_value_t = 64)]
    generate: usize,
    /// Timed runs of each test (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
    /// Kernel implementation (default: the best this CPU supports).
    #[arg(long, value_parser = parse_simd)]
    simd: Option<SimdLevel>,
    /// llama.cpp's `llama-bench` binary (`llama-batched-bench` is taken from the same folder):
    /// run both on the same model with the same settings and print Ward's ratios to them
    /// (`scripts/build-llama-cpp.sh` builds them).
    #[arg(long, value_name = "PATH")]
    llama_bench: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// A count list with no zero and no repeat (each count is one key of the JSON object).
fn check_counts(flag: &str, counts: &[usize]) -> Result<(), CommandError> {
    if counts.contains(&0) {
        return Err(format!("{flag} takes positive counts").into());
    }
    if let Some(repeat) = counts
        .iter()
        .enumerate()
        .find_map(|(i, c)| counts[..i].contains(c).then_some(c))
    {
        return Err(format!("{flag} names {repeat} twice").into());
    }
    Ok(())
}

/// Ward's figures alone: the contract's JSON object.
fn print_json(report: &BenchReport) -> Result<(), CommandError> {
    let mut json = String::new();
    report.write_json(&mut json)?;
    println!("{json}");
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    if args.threads.is_empty() {
        return Err("--threads takes positive thread counts".into());
    }
    check_counts("--threads", &args.threads)?;
    check_counts("--slots", &args.slots)?;
    if args.threads_for_slots == Some(0) {
        return Err("--threads-for-slots takes a positive count".into());
    }
    let threads_for_slots = args
        .threads_for_slots
        .unwrap_or_else(|| args.threads.iter().copied().max().unwrap_or(1));
    if args.prompt == 0 || args.generate == 0 || args.repetitions == 0 {
        return Err("--prompt, --gen and --repetitions must be positive".into());
    }
    let settings = Settings {
        prompt: args.prompt,
        generate: args.generate,
        repetitions: args.repetitions,
    };
    // Found before Ward's runs, so a wrong path fails in seconds, not after the benchmark.
    let llama = args
        .llama_bench
        .as_deref()
        .map(llama_cpp::Binaries::beside)
        .transpose()?;

    let bytes =
        std::fs::read(&args.model).map_err(|e| format!("reading {}: {e}", args.model.display()))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Model::from_gguf(&gguf, kernels_for(args.simd)?)?;
    let origin = Instant::now();
    let clock = move || origin.elapsed().as_nanos() as u64;
    let start = |threads: usize| -> Result<ThreadPool, CommandError> {
        let pool =
            ThreadPool::new(threads).map_err(|e| format!("starting {threads} threads: {e}"))?;
        // The pool caps its size; a figure must carry the thread count it was measured at.
        if pool.workers() != threads {
            return Err(format!("a thread pool holds at most {} threads", pool.workers()).into());
        }
        Ok(pool)
    };
    let pools = args
        .threads
        .iter()
        .map(|&threads| start(threads))
        .collect::<Result<Vec<_>, _>>()?;
    let executors: Vec<&dyn Executor> = pools.iter().map(|p| p as &dyn Executor).collect();
    let slot_pool = start(threads_for_slots)?;
    let report = bench::run(
        &model,
        &clock,
        settings,
        &executors,
        &slot_pool,
        &args.slots,
    )?;
    drop(executors);
    drop(pools);
    drop(slot_pool);
    // The model's memory and the pools' threads go before llama.cpp loads its own copy.
    drop(model);
    drop(bytes);

    if !args.json {
        let mut table = String::new();
        report.write_table(&mut table, &args.model.display().to_string())?;
        print!("{table}");
        std::io::stdout().flush()?;
    }
    let Some(llama) = llama else {
        if args.json {
            print_json(&report)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let plan = llama_cpp::Plan {
        model: &args.model,
        settings,
        threads: &args.threads,
        slots: &args.slots,
        threads_for_slots,
    };
    let figures = match llama.run(&plan) {
        Ok(figures) => figures,
        Err(error) => {
            // Ward's figures stand on their own; the error follows them.
            if args.json {
                print_json(&report)?;
            }
            return Err(error.into());
        }
    };
    let comparison = compare::Comparison::new(&report, &figures);
    let mut out = String::new();
    if args.json {
        comparison.write_json(&mut out)?;
        println!("{out}");
    } else {
        comparison.write_table(&mut out)?;
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}
