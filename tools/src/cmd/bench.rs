//! `ward bench`: the engine's speed on the host, measured like llama.cpp's `llama-bench`:
//! prompt processing (`--prompt N` tokens in one batch into an empty context) and decoding
//! (`--gen N` tokens one at a time from an empty context), in tokens per second, averaged over
//! `--repetitions` runs after a warm-up. `--json` prints one object:
//! `{"threads":{"1":{"prompt_tps":F,"decode_tps":F}}}`.
//!
//! `--threads` takes a comma-separated list so that thread counts can be compared in one run;
//! each count runs on its own host thread pool (the calling thread plus `N - 1` workers), the
//! matrix products split by rows across them.
//!
//! `--slots 1,2,4,8` measures the batcher: aggregate decode tokens/s with that many busy slots,
//! every step one batched forward pass over all of them, on `--threads-for-slots` threads
//! (default the largest `--threads`). `--json` then prints
//! `{"threads":{..},"slots":{"1":F,"8":F},"threads_for_slots":N}`.

use super::CommandError;
use super::generate::{kernels_for, parse_simd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use ward_inference::batcher::{Batcher, BatcherConfig, SlotId};
use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::Gguf;
use ward_inference::model::{Context, Model};
use ward_inference::parallel::{Executor, ThreadPool};
use ward_inference::sampler::SamplerConfig;

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
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Deterministic token ids spread over the vocabulary (the content does not change the cost).
fn token_ids(count: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

struct Stats {
    mean: f64,
    sd: f64,
}

fn stats(samples: &[f64]) -> Stats {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Stats {
        mean,
        sd: var.sqrt(),
    }
}

/// Prompt and decode speeds at one thread count.
struct ThreadResult {
    threads: usize,
    prompt: Stats,
    decode: Stats,
}

fn measure_threads(
    args: &Args,
    model: &Model,
    ctx: &mut Context,
    executor: &dyn Executor,
) -> Result<(Stats, Stats), CommandError> {
    let vocab = model.config().vocab_size;
    let mut prompt_tps = Vec::new();
    for run in 0..=args.repetitions {
        let tokens = token_ids(args.prompt, vocab, run as u64);
        ctx.reset();
        let start = Instant::now();
        model.forward_on(executor, ctx, &tokens)?;
        let seconds = start.elapsed().as_secs_f64();
        if run > 0 {
            prompt_tps.push(args.prompt as f64 / seconds);
        }
    }
    let mut decode_tps = Vec::new();
    for run in 0..=args.repetitions {
        let tokens = token_ids(args.generate, vocab, 1000 + run as u64);
        ctx.reset();
        let start = Instant::now();
        for &token in &tokens {
            model.forward_on(executor, ctx, &[token])?;
        }
        let seconds = start.elapsed().as_secs_f64();
        if run > 0 {
            decode_tps.push(args.generate as f64 / seconds);
        }
    }
    Ok((stats(&prompt_tps), stats(&decode_tps)))
}

/// Prompt tokens each slot holds before the batched decode is timed.
const SLOT_PROMPT: usize = 16;

/// Aggregate decode tokens/s of `slots` busy slots: every slot is filled with a short prompt,
/// then `--gen` batched steps (one token per slot each) are timed.
fn measure_slots(
    args: &Args,
    model: &Model,
    slots: usize,
    executor: &dyn Executor,
) -> Result<Stats, CommandError> {
    let vocab = model.config().vocab_size;
    let config = BatcherConfig {
        slots,
        capacity: SLOT_PROMPT + args.generate + 1,
        prefill_chunk: SLOT_PROMPT,
    };
    let mut batcher = Batcher::new(model, config);
    let mut samples = Vec::new();
    for run in 0..=args.repetitions {
        for slot in 0..slots {
            let prompt = token_ids(SLOT_PROMPT, vocab, (2000 + run * slots + slot) as u64);
            batcher.start(&prompt, args.generate + 1, SamplerConfig::greedy())?;
        }
        // Prefill: one step feeds every whole prompt and samples each slot's first token.
        batcher.step(model, executor)?;
        let start = Instant::now();
        let mut tokens = 0;
        for _ in 0..args.generate {
            tokens += batcher.step(model, executor)?.len();
        }
        let seconds = start.elapsed().as_secs_f64();
        if tokens != slots * args.generate {
            return Err(format!(
                "{slots} slots produced {tokens} tokens in {} steps",
                args.generate
            )
            .into());
        }
        if run > 0 {
            samples.push(tokens as f64 / seconds);
        }
        for slot in 0..slots {
            batcher.release(SlotId(slot))?;
        }
    }
    Ok(stats(&samples))
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    if args.threads.is_empty() || args.threads.contains(&0) {
        return Err("--threads takes positive thread counts".into());
    }
    if args.slots.contains(&0) || args.threads_for_slots == Some(0) {
        return Err("--slots and --threads-for-slots take positive counts".into());
    }
    let threads_for_slots = args
        .threads_for_slots
        .unwrap_or_else(|| args.threads.iter().copied().max().unwrap_or(1));
    if args.prompt == 0 || args.generate == 0 || args.repetitions == 0 {
        return Err("--prompt, --gen and --repetitions must be positive".into());
    }
    let bytes =
        std::fs::read(&args.model).map_err(|e| format!("reading {}: {e}", args.model.display()))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Model::from_gguf(&gguf, kernels_for(args.simd)?)?;
    let capacity = args.prompt.max(args.generate);
    let mut ctx = model.new_context(capacity, args.prompt);
    let mut results = Vec::new();
    for &threads in &args.threads {
        let pool =
            ThreadPool::new(threads).map_err(|e| format!("starting {threads} threads: {e}"))?;
        let (prompt, decode) = measure_threads(&args, &model, &mut ctx, &pool)?;
        results.push(ThreadResult {
            threads,
            prompt,
            decode,
        });
    }
    let mut slot_results = Vec::new();
    if !args.slots.is_empty() {
        let pool = ThreadPool::new(threads_for_slots)
            .map_err(|e| format!("starting {threads_for_slots} threads: {e}"))?;
        for &slots in &args.slots {
            slot_results.push((slots, measure_slots(&args, &model, slots, &pool)?));
        }
    }
    if args.json {
        let mut by_slots = serde_json::Map::new();
        for (slots, result) in &slot_results {
            by_slots.insert(slots.to_string(), serde_json::json!(result.mean));
        }
        let mut by_threads = serde_json::Map::new();
        for r in &results {
            by_threads.insert(
                r.threads.to_string(),
                serde_json::json!({ "prompt_tps": r.prompt.mean, "decode_tps": r.decode.mean }),
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "threads": by_threads,
                "slots": by_slots,
                "threads_for_slots": threads_for_slots,
            })
        );
    } else {
        println!(
            "model {} ({:.1} MB of packed weights), kernels {}, {} runs",
            args.model.display(),
            model.weights().byte_size() as f64 / 1e6,
            model.kernels().level().name(),
            args.repetitions
        );
        println!(
            "{:<8} {:<10} {:>12} {:>10}",
            "threads", "test", "tokens/s", "± sd"
        );
        for r in &results {
            println!(
                "{:<8} {:<10} {:>12.1} {:>10.1}",
                r.threads,
                format!("pp{}", args.prompt),
                r.prompt.mean,
                r.prompt.sd
            );
            println!(
                "{:<8} {:<10} {:>12.1} {:>10.1}",
                r.threads,
                format!("tg{}", args.generate),
                r.decode.mean,
                r.decode.sd
            );
        }
        if !slot_results.is_empty() {
            println!("batched decode on {threads_for_slots} threads, aggregate over all slots:");
            println!("{:<8} {:>12} {:>10}", "slots", "tokens/s", "± sd");
            for (slots, result) in &slot_results {
                println!("{:<8} {:>12.1} {:>10.1}", slots, result.mean, result.sd);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
