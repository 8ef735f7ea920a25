//! The timed runs: prompt processing and decoding at one executor, batched decoding at one
//! busy-slot count.

use super::report::{SlotFigures, ThreadFigures};
use super::{BenchError, Clock, Stats};
use crate::batcher::{Batcher, BatcherConfig, SlotId};
use crate::model::Model;
use crate::parallel::Executor;
use crate::sampler::SamplerConfig;
use alloc::vec::Vec;

/// Lengths and repetitions shared by every test of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Prompt tokens processed in one pass (`pp` in llama-bench's terms).
    pub prompt: usize,
    /// Tokens decoded one at a time (`tg`), and batched steps in the slot test.
    pub generate: usize,
    /// Timed runs of each test, after one untimed warm-up run.
    pub repetitions: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prompt: 128,
            generate: 64,
            repetitions: 5,
        }
    }
}

impl Settings {
    fn check(&self) -> Result<(), BenchError> {
        if self.prompt == 0 || self.generate == 0 || self.repetitions == 0 {
            return Err(BenchError::BadSettings(
                "prompt, gen and repetitions must be positive",
            ));
        }
        Ok(())
    }
}

/// The batcher the slot test uses: every slot holds a `prompt`-token prompt (fed in one step,
/// as `llama-batched-bench -npp` does) and then decodes `generate` tokens, so each decode step
/// attends over the same context lengths as llama.cpp's sequences.
pub fn slot_batcher_config(settings: &Settings, slots: usize) -> BatcherConfig {
    BatcherConfig {
        slots,
        capacity: settings.prompt + settings.generate + 1,
        prefill_chunk: settings.prompt,
    }
}

/// `count` deterministic token ids spread over a vocabulary of `vocab` (the content does not
/// change the cost of a pass, only the lengths do).
pub fn token_ids(count: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let vocab = vocab.max(1) as u64;
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % vocab) as u32
        })
        .collect()
}

/// Tokens per second of `tokens` processed between two clock readings.
fn rate(tokens: usize, start: u64, end: u64, test: &'static str) -> Result<f64, BenchError> {
    let elapsed = end.saturating_sub(start);
    if elapsed == 0 {
        return Err(BenchError::ClockStalled { test });
    }
    Ok(tokens as f64 * 1e9 / elapsed as f64)
}

/// Prompt-processing and decode speed with every matrix product split across `executor`'s
/// workers; the figures are labelled with its worker count.
pub fn measure_threads(
    model: &Model,
    executor: &dyn Executor,
    clock: &dyn Clock,
    settings: Settings,
) -> Result<ThreadFigures, BenchError> {
    settings.check()?;
    let vocab = model.config().vocab_size;
    let mut ctx = model.new_context(settings.prompt.max(settings.generate), settings.prompt);
    let mut prompt_tps = Vec::with_capacity(settings.repetitions);
    for run in 0..=settings.repetitions {
        let tokens = token_ids(settings.prompt, vocab, run as u64);
        ctx.reset();
        let start = clock.now_ns();
        model.forward_on(executor, &mut ctx, &tokens)?;
        let end = clock.now_ns();
        if run > 0 {
            prompt_tps.push(rate(settings.prompt, start, end, "prompt")?);
        }
    }
    let mut decode_tps = Vec::with_capacity(settings.repetitions);
    for run in 0..=settings.repetitions {
        let tokens = token_ids(settings.generate, vocab, 1000 + run as u64);
        ctx.reset();
        let start = clock.now_ns();
        for &token in &tokens {
            model.forward_on(executor, &mut ctx, &[token])?;
        }
        let end = clock.now_ns();
        if run > 0 {
            decode_tps.push(rate(settings.generate, start, end, "decode")?);
        }
    }
    Ok(ThreadFigures {
        threads: executor.workers(),
        prompt: Stats::of(&prompt_tps),
        decode: Stats::of(&decode_tps),
    })
}

/// Aggregate decode tokens/s of `slots` busy slots: each slot is filled with a `prompt`-token
/// prompt in one untimed step ([`slot_batcher_config`]), then `generate` batched steps (one
/// token per slot each) are timed.
pub fn measure_slots(
    model: &Model,
    executor: &dyn Executor,
    clock: &dyn Clock,
    settings: Settings,
    slots: usize,
) -> Result<SlotFigures, BenchError> {
    settings.check()?;
    if slots == 0 {
        return Err(BenchError::BadSettings("the slot count must be positive"));
    }
    let vocab = model.config().vocab_size;
    let mut batcher = Batcher::new(model, slot_batcher_config(&settings, slots));
    let mut samples = Vec::with_capacity(settings.repetitions);
    for run in 0..=settings.repetitions {
        for slot in 0..slots {
            let prompt = token_ids(settings.prompt, vocab, (2000 + run * slots + slot) as u64);
            batcher.start(&prompt, settings.generate + 1, SamplerConfig::greedy())?;
        }
        // One step feeds every whole prompt and samples each slot's first token.
        batcher.step(model, executor)?;
        let start = clock.now_ns();
        let mut tokens = 0;
        for _ in 0..settings.generate {
            tokens += batcher.step(model, executor)?.len();
        }
        let end = clock.now_ns();
        if tokens != slots * settings.generate {
            return Err(BenchError::SlotTokens {
                slots,
                tokens,
                steps: settings.generate,
            });
        }
        if run > 0 {
            samples.push(rate(tokens, start, end, "batched decode")?);
        }
        for slot in 0..slots {
            batcher.release(SlotId(slot))?;
        }
    }
    Ok(SlotFigures {
        slots,
        decode: Stats::of(&samples),
    })
}
