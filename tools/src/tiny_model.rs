//! A tiny LLaMA model in GGUF, generated from a seed, for tests that need *a* working model but
//! not a good one: the end-to-end tests boot the enclave under TCG, where the default model
//! makes a few tokens per second, while this one answers in milliseconds.
//!
//! It is a real model for every part of the pipeline: LLaMA hyper-parameters and tensor shapes,
//! F32 weights drawn from a seeded generator, a byte-level BPE vocabulary (the 256 bytes in
//! GPT-2's byte alphabet, no merges) with the ChatML special tokens `<|endoftext|>`,
//! `<|im_start|>`, `<|im_end|>` (the end of generation), and a ChatML chat template. Its answers
//! are nonsense, but deterministic: the same file and prompt give the same greedy tokens on the
//! host (`ward generate`) and in the enclave.

/// Shape of the generated model.
#[derive(Clone, Copy, Debug)]
pub struct TinyModelSpec {
    /// Transformer blocks.
    pub layers: u32,
    /// Embedding width.
    pub dim: u32,
    /// Attention heads.
    pub heads: u32,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: u32,
    /// Feed-forward width.
    pub ffn: u32,
    /// Context length written in the metadata.
    pub context: u32,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for TinyModelSpec {
    fn default() -> Self {
        Self {
            layers: 2,
            dim: 64,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            context: 512,
            seed: 1,
        }
    }
}

/// The ChatML special tokens, at ids 0, 1, 2 as in SmolLM2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Vocabulary size: the special tokens and one token per byte.
pub const VOCAB_SIZE: u32 = SPECIAL_TOKENS.len() as u32 + 256;

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;
const GGUF_U32: u32 = 4;
const GGUF_I32: u32 = 5;
const GGUF_F32: u32 = 6;
const GGUF_BOOL: u32 = 7;
const GGML_F32: u32 = 0;
const ALIGNMENT: usize = 32;

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves, the others
/// are moved to U+0100 and up.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    if printable(byte) {
        return char::from(byte);
    }
    let shifted = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + shifted).unwrap_or('?')
}

/// xorshift64*: enough to fill weights reproducibly.
struct Weights(u64);

impl Weights {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn tensor(&mut self, count: usize, scale: f32) -> Vec<u8> {
        (0..count)
            .flat_map(|_| (self.next() * scale).to_le_bytes())
            .collect()
    }
}

enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strings(Vec<String>),
    I32s(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_meta(out: &mut Vec<u8>, key: &str, value: &Meta) {
    put_str(out, key);
    match value {
        Meta::U32(v) => {
            out.extend_from_slice(&GGUF_U32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::F32(v) => {
            out.extend_from_slice(&GGUF_F32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::Bool(v) => {
            out.extend_from_slice(&GGUF_BOOL.to_le_bytes());
            out.push(u8::from(*v));
        }
        Meta::Str(v) => {
            out.extend_from_slice(&GGUF_STRING.to_le_bytes());
            put_str(out, v);
        }
        Meta::Strings(items) => {
            out.extend_from_slice(&GGUF_ARRAY.to_le_bytes());
            out.extend_from_slice(&GGUF_STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_str(out, item);
            }
        }
        Meta::I32s(items) => {
            out.extend_from_slice(&GGUF_ARRAY.to_le_bytes());
            out.extend_from_slice(&GGUF_I32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                out.extend_from_slice(&item.to_le_bytes());
            }
        }
    }
}

/// The GGUF bytes of a tiny model.
pub fn tiny_model_gguf(spec: &TinyModelSpec) -> Vec<u8> {
    let TinyModelSpec {
        layers,
        dim,
        heads,
        kv_heads,
        ffn,
        context,
        seed,
    } = *spec;
    let head_dim = dim / heads;
    let kv = u64::from(kv_heads * head_dim);
    let (dim, ffn, vocab) = (u64::from(dim), u64::from(ffn), u64::from(VOCAB_SIZE));

    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    let mut types = vec![3i32; SPECIAL_TOKENS.len()];
    types.extend(std::iter::repeat_n(1, 256));
    let metadata = [
        ("general.architecture", Meta::Str("llama".into())),
        ("general.name", Meta::Str("ward-tiny".into())),
        ("llama.block_count", Meta::U32(layers)),
        ("llama.embedding_length", Meta::U32(dim as u32)),
        ("llama.feed_forward_length", Meta::U32(ffn as u32)),
        ("llama.attention.head_count", Meta::U32(heads)),
        ("llama.attention.head_count_kv", Meta::U32(kv_heads)),
        ("llama.context_length", Meta::U32(context)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
        ("llama.rope.freq_base", Meta::F32(10_000.0)),
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Meta::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Meta::Strings(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.merges", Meta::Strings(Vec::new())),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
        ("tokenizer.ggml.padding_token_id", Meta::U32(2)),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(false)),
        ("tokenizer.chat_template", Meta::Str(CHAT_TEMPLATE.into())),
    ];

    let mut weights = Weights(seed.max(1));
    let matrix_scale = 1.0 / (dim as f32).sqrt() * 1.7;
    let mut tensors: Vec<(String, Vec<u64>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, scale: f32, norm: bool| {
        let count = dims.iter().product::<u64>() as usize;
        let data = if norm {
            (0..count)
                .flat_map(|_| (1.0 + 0.1 * weights.next()).to_le_bytes())
                .collect()
        } else {
            weights.tensor(count, scale)
        };
        tensors.push((name, dims, data));
    };
    add("token_embd.weight".into(), vec![dim, vocab], 1.0, false);
    for layer in 0..layers {
        let name = |part: &str| format!("blk.{layer}.{part}.weight");
        add(name("attn_norm"), vec![dim], 0.0, true);
        add(name("attn_q"), vec![dim, dim], matrix_scale, false);
        add(name("attn_k"), vec![dim, kv], matrix_scale, false);
        add(name("attn_v"), vec![dim, kv], matrix_scale, false);
        add(name("attn_output"), vec![dim, dim], matrix_scale, false);
        add(name("ffn_norm"), vec![dim], 0.0, true);
        add(name("ffn_gate"), vec![dim, ffn], matrix_scale, false);
        add(name("ffn_up"), vec![dim, ffn], matrix_scale, false);
        add(
            name("ffn_down"),
            vec![ffn, dim],
            1.0 / (ffn as f32).sqrt(),
            false,
        );
    }
    add("output_norm.weight".into(), vec![dim], 0.0, true);

    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        put_meta(&mut out, key, value);
    }
    let mut offset = 0usize;
    for (name, dims, data) in &tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&GGML_F32.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(ALIGNMENT);
    }
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    for (_, _, data) in &tensors {
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_inference::chat::{ChatMessage, ChatTemplate};
    use ward_inference::gguf::Gguf;
    use ward_inference::kernels::Kernels;
    use ward_inference::model::Model;
    use ward_inference::tokenizer::Tokenizer;

    #[test]
    fn byte_alphabet_is_a_bijection_onto_256_characters() {
        let mut chars: Vec<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(byte_char(b'A'), 'A');
        assert_eq!(byte_char(b' '), '\u{120}');
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 256);
    }

    #[test]
    fn loads_tokenizes_and_runs() {
        let bytes = tiny_model_gguf(&TinyModelSpec::default());
        let gguf = Gguf::parse(&bytes).unwrap();
        let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
        let template = ChatTemplate::from_gguf(&gguf).unwrap();
        let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
        let prompt = template.render(&[ChatMessage::user("Hi é")], true).unwrap();
        let ids = tokenizer.encode(&prompt, true);
        assert_eq!(ids[0], 1, "<|im_start|> is a special token");
        assert_eq!(tokenizer.decode(&ids, true), prompt);
        assert!(tokenizer.is_end_of_generation(2));
        let mut ctx = model.new_context(64, 64);
        let logits = model.forward(&mut ctx, &ids).unwrap();
        assert_eq!(logits.len(), VOCAB_SIZE as usize);
        assert!(logits.iter().all(|l| l.is_finite()));
        // Different seeds give different models.
        let other = tiny_model_gguf(&TinyModelSpec {
            seed: 2,
            ..TinyModelSpec::default()
        });
        assert_ne!(bytes, other);
    }
}
