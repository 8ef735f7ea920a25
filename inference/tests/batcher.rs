//! Every slot of the batcher produces exactly the tokens its request gives when run alone
//! (same prefill chunking, same sampler seed), with slots in prefill and decode mixed in the
//! same steps and requests starting and ending at different times.

mod support;
#[path = "support/tiny_q8.rs"]
mod tiny_q8;

use std::collections::BTreeMap;
use tiny_q8::{VOCAB, tiny_model};
use ward_inference::batcher::{Batcher, BatcherConfig, BatcherError, SlotId};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::parallel::Serial;
use ward_inference::sampler::{Sampler, SamplerConfig};

struct Request {
    prompt: Vec<u32>,
    max_tokens: usize,
    sampler: SamplerConfig,
}

fn alone(model: &Model, request: &Request, config: BatcherConfig) -> Vec<u32> {
    let mut ctx = model.new_context(config.capacity, config.prefill_chunk);
    let mut sampler = Sampler::new(request.sampler);
    let mut history = request.prompt.clone();
    let mut logits = model.forward(&mut ctx, &request.prompt).unwrap().to_vec();
    let mut out = Vec::new();
    for i in 0..request.max_tokens {
        let token = sampler.sample(&mut logits, &history).unwrap();
        history.push(token);
        out.push(token);
        if i + 1 < request.max_tokens {
            logits = model.forward(&mut ctx, &[token]).unwrap().to_vec();
        }
    }
    out
}

/// Starts `first` requests, then the others one per step as slots allow; returns each
/// request's tokens.
fn batched(
    model: &Model,
    requests: &[Request],
    config: BatcherConfig,
    first: usize,
) -> Vec<Vec<u32>> {
    let mut batcher = Batcher::new(model, config);
    let mut outputs = vec![Vec::new(); requests.len()];
    let mut owner: BTreeMap<SlotId, usize> = BTreeMap::new();
    let mut next = 0;
    let start = |batcher: &mut Batcher, owner: &mut BTreeMap<SlotId, usize>, next: &mut usize| {
        let r = &requests[*next];
        match batcher.start(&r.prompt, r.max_tokens, r.sampler) {
            Ok(slot) => {
                owner.insert(slot, *next);
                *next += 1;
            }
            Err(BatcherError::NoFreeSlot) => {}
            Err(e) => panic!("{e}"),
        }
    };
    while next < first.min(requests.len()) {
        start(&mut batcher, &mut owner, &mut next);
    }
    let mut steps = 0;
    while next < requests.len() || !owner.is_empty() {
        if next < requests.len() {
            start(&mut batcher, &mut owner, &mut next);
        }
        let emitted = batcher.step(model, &Serial).unwrap().to_vec();
        for e in emitted {
            let request = owner[&e.slot];
            outputs[request].push(e.token);
            if e.last {
                batcher.release(e.slot).unwrap();
                owner.remove(&e.slot);
            }
        }
        steps += 1;
        assert!(steps < 10_000, "the batcher does not finish");
    }
    assert_eq!(batcher.busy(), 0);
    outputs
}

#[test]
fn tiny_model_slots_equal_single_runs() {
    let bytes = tiny_model();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let requests: Vec<Request> = (0..7u32)
        .map(|i| Request {
            prompt: (0..(3 + 9 * i))
                .map(|j| (j * 31 + i * 7 + 1) % VOCAB as u32)
                .collect(),
            max_tokens: 5 + (i as usize * 3) % 11,
            sampler: if i % 2 == 0 {
                SamplerConfig::greedy()
            } else {
                SamplerConfig::llama_cpp_defaults(100 + u64::from(i))
            },
        })
        .collect();
    let config = BatcherConfig {
        slots: 4,
        capacity: 128,
        prefill_chunk: 8,
    };
    let expected: Vec<Vec<u32>> = requests.iter().map(|r| alone(&model, r, config)).collect();
    for first in [1, 4] {
        assert_eq!(
            batched(&model, &requests, config, first),
            expected,
            "first {first}"
        );
    }
}

#[test]
fn default_model_slots_equal_single_runs() {
    let model = support::default_model();
    let json = support::llama_cpp_reference();
    let requests: Vec<Request> = json["chat"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, chat)| Request {
            prompt: support::token_ids(&chat["prompt_ids"]),
            max_tokens: 12,
            sampler: if i % 2 == 0 {
                SamplerConfig::greedy()
            } else {
                SamplerConfig::llama_cpp_defaults(7 + i as u64)
            },
        })
        .collect();
    assert!(requests.len() >= 3);
    let config = BatcherConfig {
        slots: 8,
        capacity: 2048,
        prefill_chunk: 16,
    };
    let expected: Vec<Vec<u32>> = requests.iter().map(|r| alone(&model, r, config)).collect();
    // The greedy requests also match llama.cpp's tokens.
    for (i, tokens) in expected.iter().enumerate().step_by(2) {
        let reference = support::token_ids(&json["chat"][i]["greedy_ids_64"]);
        assert_eq!(tokens[..], reference[..tokens.len()], "chat {i}");
    }
    assert_eq!(batched(&model, &requests, config, requests.len()), expected);
}
