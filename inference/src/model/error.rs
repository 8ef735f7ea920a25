//! Errors of model loading and inference.

use crate::gguf::GgufError;
use crate::kernels::{KernelError, PackError};
use alloc::string::String;
use core::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    Gguf(GgufError),
    /// `general.architecture` is not one this engine runs.
    UnsupportedArchitecture(String),
    /// A hyper-parameter is missing its sane range or disagrees with another.
    BadHyperParameter(String),
    MissingTensor(String),
    /// A tensor's shape or type is not what the hyper-parameters imply.
    BadShape {
        tensor: String,
        found: String,
    },
    Pack {
        tensor: String,
        error: PackError,
    },
    Kernel(KernelError),
    /// A token id outside the vocabulary.
    BadToken(u32),
    /// The context has no room for more tokens.
    ContextFull {
        capacity: usize,
    },
    /// `forward` was called with no tokens.
    EmptyInput,
    /// A batched step does not fit its scratch (rows, sequences or context size) or names a
    /// context twice or out of range.
    BadBatch(&'static str),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gguf(error) => write!(f, "GGUF: {error}"),
            Self::UnsupportedArchitecture(arch) => write!(f, "unsupported architecture {arch:?}"),
            Self::BadHyperParameter(name) => write!(f, "invalid hyper-parameter {name}"),
            Self::MissingTensor(name) => write!(f, "tensor {name} is missing"),
            Self::BadShape { tensor, found } => write!(f, "tensor {tensor} has shape {found}"),
            Self::Pack { tensor, error } => write!(f, "tensor {tensor}: {error}"),
            Self::Kernel(error) => write!(f, "kernel: {error}"),
            Self::BadToken(id) => write!(f, "token id {id} is outside the vocabulary"),
            Self::ContextFull { capacity } => {
                write!(f, "context full ({capacity} tokens)")
            }
            Self::EmptyInput => write!(f, "no input tokens"),
            Self::BadBatch(what) => write!(f, "batched step: {what}"),
        }
    }
}

impl core::error::Error for ModelError {}

impl From<GgufError> for ModelError {
    fn from(error: GgufError) -> Self {
        Self::Gguf(error)
    }
}

impl From<KernelError> for ModelError {
    fn from(error: KernelError) -> Self {
        Self::Kernel(error)
    }
}
