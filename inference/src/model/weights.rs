//! The model's tensors, packed once at load for the kernels.

use super::config::LlamaConfig;
use super::error::ModelError;
use crate::gguf::Gguf;
use crate::kernels::PackedMatrix;
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
    /// Packs every tensor; shapes were checked by [`LlamaConfig::from_gguf`].
    pub fn load(gguf: &Gguf<'_>, config: &LlamaConfig) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(config.n_layers);
        for layer in 0..config.n_layers {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            layers.push(LayerWeights {
                attn_norm: vector(gguf, &name("attn_norm"))?,
                wq: matrix(gguf, &name("attn_q"))?,
                wk: matrix(gguf, &name("attn_k"))?,
                wv: matrix(gguf, &name("attn_v"))?,
                wo: matrix(gguf, &name("attn_output"))?,
                ffn_norm: vector(gguf, &name("ffn_norm"))?,
                w_gate: matrix(gguf, &name("ffn_gate"))?,
                w_up: matrix(gguf, &name("ffn_up"))?,
                w_down: matrix(gguf, &name("ffn_down"))?,
            });
        }
        Ok(Self {
            embedding: matrix(gguf, "token_embd.weight")?,
            output: if config.has_output {
                Some(matrix(gguf, "output.weight")?)
            } else {
                None
            },
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

fn matrix(gguf: &Gguf<'_>, name: &str) -> Result<PackedMatrix, ModelError> {
    PackedMatrix::from_tensor(tensor(gguf, name)?).map_err(|error| ModelError::Pack {
        tensor: String::from(name),
        error,
    })
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
