//! The default model against llama.cpp's greedy tokens (testdata/llama-cpp-reference), and the
//! scalar, AVX2 and AVX-512 paths against each other.

mod support;

use std::sync::OnceLock;
use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;

struct Chat {
    user: String,
    prompt_ids: Vec<u32>,
    greedy_ids_64: Vec<u32>,
}

fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(support::default_model_path()).expect("read the default model")
    })
}

fn chats() -> Vec<Chat> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/llama-cpp-reference/llama_cpp_reference.json"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("reference json")).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    json["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Chat {
            user: c["user"].as_str().unwrap().to_string(),
            prompt_ids: ids(&c["prompt_ids"]),
            greedy_ids_64: ids(&c["greedy_ids_64"]),
        })
        .collect()
}

/// Greedy decoding: the first maximum wins, as in the reference. Returns tokens and, per step,
/// the margin between the chosen logit and the runner-up.
fn greedy(model: &Model, prompt: &[u32], count: usize) -> (Vec<u32>, Vec<f32>) {
    let mut ctx = model.new_context(2048, 512);
    let mut logits = model.forward(&mut ctx, prompt).expect("prompt").to_vec();
    let (mut tokens, mut margins) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        let runner_up = logits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best)
            .map(|(_, &l)| l)
            .fold(f32::NEG_INFINITY, f32::max);
        margins.push(logits[best] - runner_up);
        tokens.push(best as u32);
        if tokens.len() < count {
            logits = model
                .forward(&mut ctx, &[best as u32])
                .expect("decode")
                .to_vec();
        }
    }
    (tokens, margins)
}

#[test]
fn greedy_tokens_equal_llama_cpp() {
    let gguf = Gguf::parse(model_bytes()).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let mut failures = Vec::new();
    for chat in chats() {
        let (tokens, margins) = greedy(&model, &chat.prompt_ids, 64);
        let matching = tokens
            .iter()
            .zip(&chat.greedy_ids_64)
            .take_while(|(a, b)| a == b)
            .count();
        let min_margin = margins.iter().cloned().fold(f32::INFINITY, f32::min);
        println!(
            "{:?}: {matching}/64 tokens equal llama.cpp's (smallest top-2 logit margin {min_margin:.4})",
            chat.user
        );
        if matching < 64 {
            println!(
                "  ours:      {tokens:?}\n  llama.cpp: {:?}\n  margins:   {margins:?}",
                chat.greedy_ids_64
            );
            failures.push((chat.user.clone(), matching));
        }
    }
    assert!(
        failures.is_empty(),
        "greedy tokens differ from llama.cpp: {failures:?}"
    );
}

/// Greedy tokens and every logit of the last step, bit for bit, at each SIMD level the CPU has.
/// The scalar reference is slow, so this runs the first prompt for 12 tokens.
#[test]
fn every_simd_level_gives_the_same_tokens_and_logits() {
    let gguf = Gguf::parse(model_bytes()).unwrap();
    let chat = &chats()[0];
    let mut reference: Option<(Vec<u32>, Vec<u32>)> = None;
    for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
        if !level.is_supported() {
            println!("{} not supported here: skipped", level.name());
            continue;
        }
        let model = Model::from_gguf(&gguf, Kernels::with_level(level).unwrap()).unwrap();
        let mut ctx = model.new_context(256, 64);
        let mut logits = model.forward(&mut ctx, &chat.prompt_ids).unwrap().to_vec();
        let mut tokens = Vec::new();
        for _ in 0..12 {
            let best = logits
                .iter()
                .enumerate()
                .fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
            tokens.push(best as u32);
            logits = model.forward(&mut ctx, &[best as u32]).unwrap().to_vec();
        }
        let bits: Vec<u32> = logits.iter().map(|l| l.to_bits()).collect();
        println!("{}: {tokens:?}", level.name());
        assert_eq!(
            tokens[..],
            chat.greedy_ids_64[..12],
            "{} tokens",
            level.name()
        );
        match &reference {
            None => reference = Some((tokens, bits)),
            Some((ref_tokens, ref_bits)) => {
                assert_eq!(&tokens, ref_tokens, "{} tokens", level.name());
                assert!(
                    &bits == ref_bits,
                    "{} logits differ from the scalar reference",
                    level.name()
                );
            }
        }
    }
}
