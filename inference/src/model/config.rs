//! LLaMA hyper-parameters from GGUF metadata, and the check that every tensor the forward pass
//! uses exists with the shape those hyper-parameters imply.

use super::error::ModelError;
use crate::gguf::{Gguf, TensorType};
use alloc::format;
use alloc::string::String;

/// Largest width (embedding, feed-forward, head) accepted, to bound allocations.
const MAX_WIDTH: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 20;

/// Hyper-parameters of a LLaMA-architecture model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    /// Whether the file has its own `output.weight` (else the embedding is reused).
    pub has_output: bool,
}

impl LlamaConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Reads and validates the hyper-parameters and every tensor shape.
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Self, ModelError> {
        let arch = gguf.architecture()?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture(String::from(arch)));
        }
        let key = |name: &str| format!("llama.{name}");
        let count = |name: &str, max: usize| -> Result<usize, ModelError> {
            let value = gguf.get_u32(&key(name))? as usize;
            if value == 0 || value > max {
                return Err(ModelError::BadHyperParameter(key(name)));
            }
            Ok(value)
        };
        let n_layers = count("block_count", MAX_LAYERS)?;
        let dim = count("embedding_length", MAX_WIDTH)?;
        let ffn_dim = count("feed_forward_length", MAX_WIDTH)?;
        let n_heads = count("attention.head_count", MAX_WIDTH)?;
        let n_kv_heads = match gguf.opt_u32(&key("attention.head_count_kv"))? {
            None => n_heads,
            Some(_) => count("attention.head_count_kv", MAX_WIDTH)?,
        };
        if !dim.is_multiple_of(n_heads) || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(ModelError::BadHyperParameter(key("attention.head_count")));
        }
        let head_dim = dim / n_heads;
        if !head_dim.is_multiple_of(2) {
            return Err(ModelError::BadHyperParameter(key("embedding_length")));
        }
        // Partial rotary embeddings and unusual head widths are not supported.
        for name in [
            "rope.dimension_count",
            "attention.key_length",
            "attention.value_length",
        ] {
            if let Some(value) = gguf.opt_u32(&key(name))?
                && value as usize != head_dim
            {
                return Err(ModelError::BadHyperParameter(key(name)));
            }
        }
        if let Some(scaling) = gguf.opt_str(&key("rope.scaling.type"))?
            && scaling != "none"
        {
            return Err(ModelError::BadHyperParameter(key("rope.scaling.type")));
        }
        let rms_eps = gguf
            .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        let rope_freq_base = gguf.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rms_eps.is_finite()
            && rms_eps >= 0.0
            && rope_freq_base.is_finite()
            && rope_freq_base > 1.0)
        {
            return Err(ModelError::BadHyperParameter(key("rope.freq_base")));
        }
        let context_length = gguf.opt_u32(&key("context_length"))?.unwrap_or(2048) as usize;

        let embedding = gguf
            .tensor("token_embd.weight")
            .ok_or(ModelError::MissingTensor(String::from("token_embd.weight")))?;
        let vocab_size = embedding.dims[1] as usize;
        if vocab_size == 0 || vocab_size > MAX_VOCAB {
            return Err(ModelError::BadHyperParameter(String::from(
                "vocabulary size",
            )));
        }
        if let Some(declared) = gguf.opt_u32(&key("vocab_size"))?
            && declared as usize != vocab_size
        {
            return Err(ModelError::BadHyperParameter(key("vocab_size")));
        }
        let config = Self {
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length,
            rms_eps,
            rope_freq_base,
            has_output: gguf.tensor("output.weight").is_some(),
        };
        config.check_tensors(gguf)?;
        Ok(config)
    }

    fn check_tensors(&self, gguf: &Gguf<'_>) -> Result<(), ModelError> {
        let (dim, q, kv, ffn) = (self.dim, self.q_dim(), self.kv_dim(), self.ffn_dim);
        check_shape(gguf, "token_embd.weight", &[dim, self.vocab_size])?;
        check_shape(gguf, "output_norm.weight", &[dim])?;
        if self.has_output {
            check_shape(gguf, "output.weight", &[dim, self.vocab_size])?;
        }
        for layer in 0..self.n_layers {
            for (name, shape) in [
                ("attn_norm", &[dim][..]),
                ("attn_q", &[dim, q][..]),
                ("attn_k", &[dim, kv][..]),
                ("attn_v", &[dim, kv][..]),
                ("attn_output", &[q, dim][..]),
                ("ffn_norm", &[dim][..]),
                ("ffn_gate", &[dim, ffn][..]),
                ("ffn_up", &[dim, ffn][..]),
                ("ffn_down", &[ffn, dim][..]),
            ] {
                check_shape(gguf, &format!("blk.{layer}.{name}.weight"), shape)?;
            }
        }
        Ok(())
    }
}

/// The tensor exists, has exactly `shape`, and (for vectors) is a float type.
fn check_shape(gguf: &Gguf<'_>, name: &str, shape: &[usize]) -> Result<(), ModelError> {
    let tensor = gguf
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(String::from(name)))?;
    let found = tensor.shape();
    let matches = found.len() == shape.len()
        && found
            .iter()
            .zip(shape)
            .all(|(&have, &want)| have == want as u64);
    if !matches {
        return Err(ModelError::BadShape {
            tensor: String::from(name),
            found: format!("{found:?}"),
        });
    }
    if shape.len() == 1 && !matches!(tensor.tensor_type, TensorType::F32 | TensorType::F16) {
        return Err(ModelError::BadShape {
            tensor: String::from(name),
            found: format!("type {}", tensor.tensor_type.name()),
        });
    }
    Ok(())
}
