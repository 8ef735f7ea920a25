//! The model's tensors, packed once at load for the kernels.

use super::config::LlamaConfig;
use super::error::ModelError;
use crate::gguf::Gguf;
use crate::kernels::{MatrixSource, PackedMatrix};
use crate::quant::dequantize_row;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: PackedMatrix,
    pub wk: PackedMatrix,
    pub wv: PackedMatrix,
    pub wo: PackedMatrix,
    pub ffn_norm: Vec<f32>,
    pub w_gate: PackedMatrix,
    pub w_up: PackedMatrix,
    pub w_down: PackedMatrix,
}

#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding; also the output head when the file has no `output.weight`.
    pub embedding: PackedMatrix,
    pub output: Option<PackedMatrix>,
    pub output_norm: Vec<f32>,
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// Packs every tensor (all matrices into one buffer); shapes were checked by
    /// [`LlamaConfig::from_gguf`].
    pub fn load(gguf: &Gguf<'_>, config: &LlamaConfig) -> Result<Self, ModelError> {
        const PARTS: [&str; 7] = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ];
        let mut names = Vec::with_capacity(config.n_layers * PARTS.len() + 2);
        names.push(String::from("token_embd.weight"));
        if config.has_output {
            names.push(String::from("output.weight"));
        }
        for layer in 0..config.n_layers {
            for part in PARTS {
                names.push(format!("blk.{layer}.{part}.weight"));
            }
        }
        let mut sources = Vec::with_capacity(names.len());
        for name in &names {
            let source = MatrixSource::from_tensor(tensor(gguf, name)?).map_err(|error| {
                ModelError::Pack {
                    tensor: name.clone(),
                    error,
                }
            })?;
            sources.push(source);
        }
        let mut matrices = PackedMatrix::pack_all(&sources)
            .map_err(|error| ModelError::Pack {
                tensor: String::from("weights"),
                error,
            })?
            .into_iter();
        let mut next = || {
            matrices
                .next()
                .ok_or_else(|| ModelError::MissingTensor(String::from("weights")))
        };
        let embedding = next()?;
        let output = if config.has_output {
            Some(next()?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.n_layers);
        for layer in 0..config.n_layers {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            layers.push(LayerWeights {
                attn_norm: vector(gguf, &name("attn_norm"))?,
                wq: next()?,
                wk: next()?,
                wv: next()?,
                wo: next()?,
                ffn_norm: vector(gguf, &name("ffn_norm"))?,
                w_gate: next()?,
                w_up: next()?,
                w_down: next()?,
            });
        }
        Ok(Self {
            embedding,
            output,
            output_norm: vector(gguf, "output_norm.weight")?,
            layers,
        })
    }

    pub fn output_head(&self) -> &PackedMatrix {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Bytes of packed weights.
    pub fn byte_size(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|m| m.byte_size())
                    .sum::<usize>()
            })
            .sum();
        layers + self.embedding.byte_size() + self.output.as_ref().map_or(0, |m| m.byte_size())
    }
}

fn tensor<'g, 'a>(
    gguf: &'g Gguf<'a>,
    name: &str,
) -> Result<&'g crate::gguf::TensorInfo<'a>, ModelError> {
    gguf.tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(String::from(name)))
}

fn vector(gguf: &Gguf<'_>, name: &str) -> Result<Vec<f32>, ModelError> {
    let info = tensor(gguf, name)?;
    let mut out = alloc::vec![0.0; info.element_count() as usize];
    if !dequantize_row(info.tensor_type, info.data, &mut out) {
        return Err(ModelError::BadShape {
            tensor: String::from(name),
            found: String::from("size"),
        });
    }
    Ok(out)
}
