//! A tiny generated LLaMA model with Q8_0 matrices (rows not a multiple of the thread split).

use super::support::gguf_writer::{GgufWriter, Meta};
use ward_inference::gguf::TensorType;
use ward_inference::quant::f32_to_f16_bits;

const DIM: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 160;
const LAYERS: usize = 2;
pub const VOCAB: usize = 212;

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

pub fn tiny_model() -> Vec<u8> {
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
