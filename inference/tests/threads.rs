//! The forward pass split across threads gives the same logits, bit for bit, as on one thread:
//! on a tiny generated model (Q8_0 matrices, rows not a multiple of the split) and on the
//! default model's reference prompt.

mod support;

use support::gguf_writer::{GgufWriter, Meta};
use ward_inference::gguf::{Gguf, TensorType};
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::parallel::{Executor, Serial, ThreadPool};
use ward_inference::quant::f32_to_f16_bits;

const DIM: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 160;
const LAYERS: usize = 2;
const VOCAB: usize = 212;

fn q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        for &v in block {
            let q = if d == 0.0 { 0.0 } else { (v / d).round() };
            out.push(q as i8 as u8);
        }
    }
    out
}

fn tiny_model() -> Vec<u8> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut float = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut writer = GgufWriter::new();
    writer
        .meta("general.architecture", Meta::Str("llama".into()))
        .meta("llama.block_count", Meta::U32(LAYERS as u32))
        .meta("llama.context_length", Meta::U32(64))
        .meta("llama.embedding_length", Meta::U32(DIM as u32))
        .meta("llama.feed_forward_length", Meta::U32(FFN as u32))
        .meta("llama.attention.head_count", Meta::U32(HEADS as u32))
        .meta("llama.attention.head_count_kv", Meta::U32(KV_HEADS as u32))
        .meta("llama.rope.freq_base", Meta::F32(10_000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5))
        .meta(
            "llama.rope.dimension_count",
            Meta::U32((DIM / HEADS) as u32),
        );
    let mut matrix = |writer: &mut GgufWriter, name: &str, cols: usize, rows: usize| {
        let values: Vec<f32> = (0..rows * cols).map(|_| float() * 0.3).collect();
        writer.tensor(
            name,
            &[cols as u64, rows as u64],
            TensorType::Q8_0.id(),
            q8_0(&values),
        );
    };
    let norm = |writer: &mut GgufWriter, name: &str| {
        let bytes = (0..DIM)
            .flat_map(|i| (1.0 + ((i % 5) as f32 - 2.0) / 10.0).to_le_bytes())
            .collect();
        writer.tensor(name, &[DIM as u64], TensorType::F32.id(), bytes);
    };
    matrix(&mut writer, "token_embd.weight", DIM, VOCAB);
    for layer in 0..LAYERS {
        let name = |part: &str| format!("blk.{layer}.{part}.weight");
        norm(&mut writer, &name("attn_norm"));
        matrix(&mut writer, &name("attn_q"), DIM, DIM);
        matrix(&mut writer, &name("attn_k"), DIM, DIM / HEADS * KV_HEADS);
        matrix(&mut writer, &name("attn_v"), DIM, DIM / HEADS * KV_HEADS);
        matrix(&mut writer, &name("attn_output"), DIM, DIM);
        norm(&mut writer, &name("ffn_norm"));
        matrix(&mut writer, &name("ffn_gate"), DIM, FFN);
        matrix(&mut writer, &name("ffn_up"), DIM, FFN);
        matrix(&mut writer, &name("ffn_down"), FFN, DIM);
    }
    norm(&mut writer, "output_norm.weight");
    writer.build()
}

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
    let bytes = std::fs::read(support::default_model_path()).expect("read the default model");
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/llama-cpp-reference/llama_cpp_reference.json"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("reference json")).unwrap();
    let chat = &json["chat"][0];
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let prompt = ids(&chat["prompt_ids"]);
    let expected = ids(&chat["greedy_ids_64"]);
    let pool = ThreadPool::new(2).unwrap();
    let serial = run(&model, &Serial, &prompt, 512, 16);
    let threaded = run(&model, &pool, &prompt, 512, 16);
    assert_eq!(threaded.0, expected[..16]);
    assert!(serial == threaded, "{:?} vs {:?}", serial.0, threaded.0);
}
