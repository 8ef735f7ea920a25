//! Tiny LLaMA models written by the test itself (random weights, every tensor type): parse,
//! forward, the SIMD levels against each other, the forward pass against a naive f64 reference
//! implementation, and malformed models rejected with typed errors.

mod support;

use support::gguf_writer::{GgufWriter, Meta};
use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::{Gguf, TensorType};
use ward_inference::kernels::Kernels;
use ward_inference::model::{Model, ModelError};
use ward_inference::quant::{dequantize_row, f32_to_f16_bits, row_bytes};

const DIM: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = DIM / HEADS;
const FFN: usize = 96;
const LAYERS: usize = 2;
const VOCAB: usize = 100;
const ROPE_BASE: f32 = 10_000.0;
const EPS: f32 = 1e-5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Encodes `values` (rows of `cols`) as `tensor_type`, quantizing like llama.cpp's reference
/// quantizers (max-abs scale for Q8_0/Q4_0, min/max for Q4_1).
fn encode(tensor_type: TensorType, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    match tensor_type {
        TensorType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_f16_bits(*v).to_le_bytes())),
        TensorType::Q8_0 => {
            for block in values.chunks_exact(32) {
                let max = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = max / 127.0;
                out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
                for v in block {
                    out.push((if d == 0.0 { 0.0 } else { v / d }).round() as i8 as u8);
                }
            }
        }
        TensorType::Q4_0 => {
            for block in values.chunks_exact(32) {
                let max = block
                    .iter()
                    .fold(0.0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
                let d = max / -8.0;
                out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
                let q =
                    |v: f32| ((if d == 0.0 { 0.0 } else { v / d }) + 8.5).clamp(0.0, 15.0) as u8;
                for j in 0..16 {
                    out.push(q(block[j]) | (q(block[j + 16]) << 4));
                }
            }
        }
        TensorType::Q4_1 => {
            for block in values.chunks_exact(32) {
                let min = block.iter().cloned().fold(f32::INFINITY, f32::min);
                let max = block.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
                out.extend_from_slice(&f32_to_f16_bits(min).to_le_bytes());
                let q = |v: f32| {
                    ((if d == 0.0 { 0.0 } else { (v - min) / d }) + 0.5).clamp(0.0, 15.0) as u8
                };
                for j in 0..16 {
                    out.push(q(block[j]) | (q(block[j + 16]) << 4));
                }
            }
        }
    }
    out
}

struct Spec {
    matrices: TensorType,
    norms: TensorType,
    tied_output: bool,
}

fn tiny_model(spec: &Spec, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut writer = GgufWriter::new();
    writer
        .meta("general.architecture", Meta::Str("llama".into()))
        .meta("llama.block_count", Meta::U32(LAYERS as u32))
        .meta("llama.context_length", Meta::U32(64))
        .meta("llama.embedding_length", Meta::U32(DIM as u32))
        .meta("llama.feed_forward_length", Meta::U32(FFN as u32))
        .meta("llama.attention.head_count", Meta::U32(HEADS as u32))
        .meta("llama.attention.head_count_kv", Meta::U32(KV_HEADS as u32))
        .meta("llama.rope.freq_base", Meta::F32(ROPE_BASE))
        .meta("llama.attention.layer_norm_rms_epsilon", Meta::F32(EPS))
        .meta("llama.rope.dimension_count", Meta::U32(HEAD_DIM as u32));
    let mut matrix = |writer: &mut GgufWriter, name: &str, cols: usize, rows: usize, scale: f32| {
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.float() * scale).collect();
        writer.tensor(
            name,
            &[cols as u64, rows as u64],
            spec.matrices.id(),
            encode(spec.matrices, &values),
        );
    };
    let norm = |writer: &mut GgufWriter, name: &str, offset: f32| {
        let values: Vec<f32> = (0..DIM)
            .map(|i| 1.0 + offset * ((i % 7) as f32 - 3.0) / 10.0)
            .collect();
        writer.tensor(
            name,
            &[DIM as u64],
            spec.norms.id(),
            encode(spec.norms, &values),
        );
    };
    matrix(&mut writer, "token_embd.weight", DIM, VOCAB, 1.0);
    for layer in 0..LAYERS {
        let name = |part: &str| format!("blk.{layer}.{part}.weight");
        norm(&mut writer, &name("attn_norm"), 1.0);
        matrix(&mut writer, &name("attn_q"), DIM, DIM, 0.3);
        matrix(&mut writer, &name("attn_k"), DIM, KV_HEADS * HEAD_DIM, 0.3);
        matrix(&mut writer, &name("attn_v"), DIM, KV_HEADS * HEAD_DIM, 0.3);
        matrix(&mut writer, &name("attn_output"), DIM, DIM, 0.3);
        norm(&mut writer, &name("ffn_norm"), 0.5);
        matrix(&mut writer, &name("ffn_gate"), DIM, FFN, 0.3);
        matrix(&mut writer, &name("ffn_up"), DIM, FFN, 0.3);
        matrix(&mut writer, &name("ffn_down"), FFN, DIM, 0.3);
    }
    norm(&mut writer, "output_norm.weight", 0.2);
    if !spec.tied_output {
        matrix(&mut writer, "output.weight", DIM, VOCAB, 0.5);
    }
    writer.build()
}

/// The tensor as f32 rows.
fn dequantized(gguf: &Gguf<'_>, name: &str) -> Vec<f32> {
    let t = gguf.tensor(name).unwrap();
    let cols = t.dims[0] as usize;
    let row_len = row_bytes(t.tensor_type, cols);
    let mut out = vec![0.0; t.element_count() as usize];
    for (row, dst) in t.data.chunks_exact(row_len).zip(out.chunks_exact_mut(cols)) {
        assert!(dequantize_row(t.tensor_type, row, dst));
    }
    out
}

/// A plain f64 LLaMA forward pass over `tokens` from position 0; the last token's logits.
fn naive_logits(gguf: &Gguf<'_>, tokens: &[u32]) -> Vec<f64> {
    let w = |name: &str| {
        dequantized(gguf, name)
            .into_iter()
            .map(f64::from)
            .collect::<Vec<f64>>()
    };
    let matvec = |m: &[f64], x: &[f64]| -> Vec<f64> {
        m.chunks_exact(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let rms = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let s = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + EPS as f64).sqrt();
        x.iter().zip(g).map(|(v, g)| v / s * g).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        for head in v.chunks_exact_mut(HEAD_DIM) {
            for i in 0..HEAD_DIM / 2 {
                let theta = pos as f64 * (ROPE_BASE as f64).powf(-2.0 * i as f64 / HEAD_DIM as f64);
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * theta.cos() - x1 * theta.sin();
                head[2 * i + 1] = x0 * theta.sin() + x1 * theta.cos();
            }
        }
    };
    let embedding = w("token_embd.weight");
    let mut keys = vec![Vec::<Vec<f64>>::new(); LAYERS];
    let mut values = vec![Vec::<Vec<f64>>::new(); LAYERS];
    let mut x = Vec::new();
    for (pos, &token) in tokens.iter().enumerate() {
        x = embedding[token as usize * DIM..(token as usize + 1) * DIM].to_vec();
        for layer in 0..LAYERS {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            let xn = rms(&x, &w(&name("attn_norm")));
            let mut q = matvec(&w(&name("attn_q")), &xn);
            let mut k = matvec(&w(&name("attn_k")), &xn);
            let v = matvec(&w(&name("attn_v")), &xn);
            rope(&mut q, pos);
            rope(&mut k, pos);
            keys[layer].push(k);
            values[layer].push(v);
            let mut att = vec![0.0; DIM];
            for h in 0..HEADS {
                let kvh = h / (HEADS / KV_HEADS);
                let qh = &q[h * HEAD_DIM..(h + 1) * HEAD_DIM];
                let scores: Vec<f64> = keys[layer]
                    .iter()
                    .map(|k| {
                        qh.iter()
                            .zip(&k[kvh * HEAD_DIM..])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (HEAD_DIM as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (p, e) in exps.iter().enumerate() {
                    for d in 0..HEAD_DIM {
                        att[h * HEAD_DIM + d] += e / total * values[layer][p][kvh * HEAD_DIM + d];
                    }
                }
            }
            let o = matvec(&w(&name("attn_output")), &att);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = rms(&x, &w(&name("ffn_norm")));
            let g = matvec(&w(&name("ffn_gate")), &xn);
            let u = matvec(&w(&name("ffn_up")), &xn);
            let hidden: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = matvec(&w(&name("ffn_down")), &hidden);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
    }
    let xn = rms(&x, &w("output_norm.weight"));
    let head = if gguf.tensor("output.weight").is_some() {
        w("output.weight")
    } else {
        embedding
    };
    matvec(&head, &xn)
}

const PROMPT: [u32; 6] = [3, 17, 42, 99, 0, 58];

fn levels() -> Vec<SimdLevel> {
    [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

#[test]
fn every_tensor_type_parses_runs_and_agrees_with_a_naive_reference() {
    let specs = [
        Spec {
            matrices: TensorType::F32,
            norms: TensorType::F32,
            tied_output: false,
        },
        Spec {
            matrices: TensorType::F16,
            norms: TensorType::F16,
            tied_output: true,
        },
        Spec {
            matrices: TensorType::Q4_0,
            norms: TensorType::F32,
            tied_output: false,
        },
        Spec {
            matrices: TensorType::Q4_1,
            norms: TensorType::F32,
            tied_output: true,
        },
        Spec {
            matrices: TensorType::Q8_0,
            norms: TensorType::F32,
            tied_output: true,
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        let bytes = tiny_model(spec, 1000 + i as u64);
        assert!(bytes.len() < 400_000, "tiny model of {} bytes", bytes.len());
        let gguf = Gguf::parse(&bytes).unwrap();
        let reference = naive_logits(&gguf, &PROMPT);
        let mut per_level: Vec<Vec<u32>> = Vec::new();
        for level in levels() {
            let model = Model::from_gguf(&gguf, Kernels::with_level(level).unwrap()).unwrap();
            assert_eq!(model.config().has_output, !spec.tied_output);
            // Prompt in one batch, then two decode steps (the last checked against the reference).
            let mut ctx = model.new_context(16, 8);
            model.forward(&mut ctx, &PROMPT[..4]).unwrap();
            model.forward(&mut ctx, &PROMPT[4..5]).unwrap();
            let logits = model.forward(&mut ctx, &PROMPT[5..]).unwrap().to_vec();
            assert_eq!(logits.len(), VOCAB);
            let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = logits
                .iter()
                .zip(&reference)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            // Float weights: f16 rounding of the KV cache only. Quantized weights: 8-bit
            // activations as well.
            let tolerance = match spec.matrices {
                TensorType::F32 | TensorType::F16 => 0.01,
                _ => 0.06,
            };
            assert!(
                worst <= tolerance * scale,
                "{} {}: logits differ from the reference by {worst} (scale {scale})",
                spec.matrices.name(),
                level.name()
            );
            println!(
                "{} {}: worst difference {worst:.5} of scale {scale:.3}",
                spec.matrices.name(),
                level.name()
            );
            per_level.push(logits.iter().map(|v| v.to_bits()).collect());
            // A prompt split into steps of two or more tokens gives the same logits as one step.
            let mut whole = model.new_context(16, 8);
            let mut split = model.new_context(16, 3);
            let a = model.forward(&mut whole, &PROMPT).unwrap().to_vec();
            let b = model.forward(&mut split, &PROMPT).unwrap().to_vec();
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "split prompt"
            );
        }
        for bits in &per_level[1..] {
            assert!(
                bits == &per_level[0],
                "{}: SIMD levels disagree",
                spec.matrices.name()
            );
        }
    }
}

#[test]
fn malformed_models_are_typed_errors() {
    let spec = Spec {
        matrices: TensorType::Q8_0,
        norms: TensorType::F32,
        tied_output: true,
    };
    let good = tiny_model(&spec, 7);
    let kernels = Kernels::detect();
    let load = |bytes: &[u8]| Model::from_gguf(&Gguf::parse(bytes).unwrap(), kernels).map(|_| ());
    assert_eq!(load(&good), Ok(()));

    // Rewrites one metadata value or tensor of the tiny model.
    let rebuild = |edit: &dyn Fn(&mut GgufWriter)| {
        let mut rng_writer = GgufWriter::new();
        let parsed = Gguf::parse(&good).unwrap();
        for (key, value) in parsed.metadata() {
            let meta = match value {
                ward_inference::gguf::Value::String(s) => Meta::Str(s.to_string()),
                ward_inference::gguf::Value::U32(v) => Meta::U32(*v),
                ward_inference::gguf::Value::F32(v) => Meta::F32(*v),
                other => panic!("unexpected {other:?}"),
            };
            rng_writer.meta(key, meta);
        }
        for t in parsed.tensors() {
            rng_writer.tensor(t.name, t.shape(), t.tensor_type.id(), t.data.to_vec());
        }
        edit(&mut rng_writer);
        rng_writer.build()
    };
    let bytes = rebuild(&|w| w.metadata[0].1 = Meta::Str("gpt2".into()));
    assert!(matches!(
        load(&bytes),
        Err(ModelError::UnsupportedArchitecture(_))
    ));
    let bytes = rebuild(&|w| w.tensors.retain(|t| t.name != "blk.1.ffn_up.weight"));
    assert!(
        matches!(load(&bytes), Err(ModelError::MissingTensor(name)) if name == "blk.1.ffn_up.weight")
    );
    let bytes = rebuild(&|w| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name == "blk.0.attn_k.weight")
            .unwrap();
        t.dims = vec![DIM as u64, DIM as u64];
        t.data = vec![0; DIM * DIM / 32 * 34];
    });
    assert!(
        matches!(load(&bytes), Err(ModelError::BadShape { tensor, .. }) if tensor == "blk.0.attn_k.weight")
    );
    let bytes = rebuild(&|w| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name == "output_norm.weight")
            .unwrap();
        t.type_id = TensorType::Q8_0.id();
        t.dims = vec![DIM as u64];
        t.data = vec![0; DIM / 32 * 34];
    });
    assert!(matches!(load(&bytes), Err(ModelError::BadShape { .. })));
    let bytes = rebuild(&|w| {
        let kv = w
            .metadata
            .iter_mut()
            .find(|(k, _)| k == "llama.attention.head_count_kv")
            .unwrap();
        kv.1 = Meta::U32(3);
    });
    assert!(matches!(
        load(&bytes),
        Err(ModelError::BadHyperParameter(_))
    ));
    let bytes = rebuild(&|w| w.metadata.retain(|(k, _)| k != "llama.block_count"));
    assert!(matches!(load(&bytes), Err(ModelError::Gguf(_))));

    // Bad inputs to a good model.
    let gguf = Gguf::parse(&good).unwrap();
    let model = Model::from_gguf(&gguf, kernels).unwrap();
    let mut ctx = model.new_context(4, 4);
    assert_eq!(
        model.forward(&mut ctx, &[VOCAB as u32]).unwrap_err(),
        ModelError::BadToken(VOCAB as u32)
    );
    assert_eq!(
        model.forward(&mut ctx, &[]).unwrap_err(),
        ModelError::EmptyInput
    );
    model.forward(&mut ctx, &[1, 2, 3]).unwrap();
    assert_eq!(
        model.forward(&mut ctx, &[1, 2]).unwrap_err(),
        ModelError::ContextFull { capacity: 4 }
    );
    model.forward(&mut ctx, &[4]).unwrap();
    ctx.reset();
    assert_eq!(ctx.position(), 0);
    model.forward(&mut ctx, &[1, 2, 3, 4]).unwrap();
}
