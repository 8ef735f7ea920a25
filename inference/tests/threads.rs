//! The forward pass split across threads gives the same logits, bit for bit, as on one thread:
//! on a tiny generated model (Q8_0 matrices, rows not a multiple of the split) and on the
//! default model's reference prompt; and the batcher's steps (attention split by slot, product
//! inputs made in the same run as the products) likewise, on the tiny model and with eight
//! slots of the default model.

mod support;
#[path = "support/tiny_q8.rs"]
mod tiny_q8;

use tiny_q8::{VOCAB, tiny_model};
use ward_inference::batcher::{Batcher, BatcherConfig};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::parallel::{Executor, Serial, ThreadPool};
use ward_inference::sampler::SamplerConfig;

/// Greedy tokens and the bits of every step's logits: the prompt in chunks of `max_batch`, then
/// `count` decode steps.
fn run(
    model: &Model,
    executor: &dyn Executor,
    prompt: &[u32],
    max_batch: usize,
    count: usize,
) -> (Vec<u32>, Vec<Vec<u32>>) {
    // The capacity bounds the padded key/value length, which decides the attention's summation
    // order: the reference tokens were taken with a 2048-position context.
    let mut ctx = model.new_context(2048, max_batch);
    let mut logits = model
        .forward_on(executor, &mut ctx, prompt)
        .unwrap()
        .to_vec();
    let (mut tokens, mut bits) = (Vec::new(), Vec::new());
    for _ in 0..count {
        bits.push(logits.iter().map(|l| l.to_bits()).collect());
        let best =
            (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b }) as u32;
        tokens.push(best);
        logits = model
            .forward_on(executor, &mut ctx, &[best])
            .unwrap()
            .to_vec();
    }
    (tokens, bits)
}

#[test]
fn tiny_model_threads_equal_serial() {
    let bytes = tiny_model();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let prompt: Vec<u32> = (0..21).map(|i| (i * 37 + 5) % VOCAB as u32).collect();
    for max_batch in [1, 4, 32] {
        let serial = run(&model, &Serial, &prompt, max_batch, 12);
        for workers in [2, 3, 5] {
            let pool = ThreadPool::new(workers).unwrap();
            let threaded = run(&model, &pool, &prompt, max_batch, 12);
            assert!(
                serial == threaded,
                "{workers} workers, batch {max_batch}: {:?} vs {:?}",
                serial.0,
                threaded.0
            );
        }
    }
}

#[test]
fn default_model_two_threads_equal_one() {
    let model = support::default_model();
    let json = support::llama_cpp_reference();
    let chat = &json["chat"][0];
    let prompt = support::token_ids(&chat["prompt_ids"]);
    let expected = support::token_ids(&chat["greedy_ids_64"]);
    let pool = ThreadPool::new(2).unwrap();
    let serial = run(&model, &Serial, &prompt, 512, 16);
    let threaded = run(&model, &pool, &prompt, 512, 16);
    assert_eq!(threaded.0, expected[..16]);
    assert!(serial == threaded, "{:?} vs {:?}", serial.0, threaded.0);
}

/// Every slot's logits after each batched step, bit for bit, with `slots` busy slots fed prompts
/// of different lengths (prefill chunks and decode rows mixed in steps), greedy.
fn batched_logits(model: &Model, executor: &dyn Executor, slots: usize) -> Vec<Vec<u32>> {
    let prompts: Vec<Vec<u32>> = (0..slots as u32)
        .map(|slot| {
            (0..3 + 5 * slot)
                .map(|j| (j * 29 + slot * 11 + 3) % VOCAB as u32)
                .collect()
        })
        .collect();
    let config = BatcherConfig {
        slots,
        capacity: 96,
        prefill_chunk: 8,
    };
    batched_logits_of(model, executor, &prompts, config, 10)
}

/// Every slot's logits after each batched step, bit for bit (with the slot and the greedy token),
/// for one request per prompt producing `max_tokens` tokens.
fn batched_logits_of(
    model: &Model,
    executor: &dyn Executor,
    prompts: &[Vec<u32>],
    config: BatcherConfig,
    max_tokens: usize,
) -> Vec<Vec<u32>> {
    let mut batcher = Batcher::new(model, config);
    for prompt in prompts {
        batcher
            .start(prompt, max_tokens, SamplerConfig::greedy())
            .unwrap();
    }
    let mut bits = Vec::new();
    while batcher.busy() > 0 {
        let emitted = batcher.step(model, executor).unwrap().to_vec();
        for e in emitted {
            bits.push(
                batcher
                    .logits(e.slot)
                    .iter()
                    .map(|l| l.to_bits())
                    .chain([e.slot.0 as u32, e.token])
                    .collect(),
            );
            if e.last {
                batcher.release(e.slot).unwrap();
            }
        }
    }
    bits
}

#[test]
fn tiny_model_batched_steps_on_threads_equal_serial() {
    let bytes = tiny_model();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    for slots in [1, 3, 8] {
        let serial = batched_logits(&model, &Serial, slots);
        for workers in [2, 3] {
            let pool = ThreadPool::new(workers).unwrap();
            assert!(
                batched_logits(&model, &pool, slots) == serial,
                "{slots} slots on {workers} workers"
            );
        }
    }
}

#[test]
fn default_model_eight_slots_on_two_threads_equal_serial() {
    let model = support::default_model();
    let json = support::llama_cpp_reference();
    let chats: Vec<Vec<u32>> = json["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chat| support::token_ids(&chat["prompt_ids"]))
        .collect();
    // Eight prompts of different lengths: the reference prompts and cut-down copies of them.
    let prompts: Vec<Vec<u32>> = (0..8)
        .map(|i| {
            let chat = &chats[i % chats.len()];
            chat[..chat.len() - (i / chats.len()) * 3].to_vec()
        })
        .collect();
    let config = BatcherConfig {
        slots: 8,
        capacity: 256,
        prefill_chunk: 16,
    };
    let serial = batched_logits_of(&model, &Serial, &prompts, config, 4);
    let pool = ThreadPool::new(2).unwrap();
    assert!(batched_logits_of(&model, &pool, &prompts, config, 4) == serial);
    assert_eq!(serial.len(), 8 * 4);
}
