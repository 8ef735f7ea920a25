//! Why a benchmark could not produce its figures.

use crate::batcher::BatcherError;
use crate::model::ModelError;
use core::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum BenchError {
    /// A length, repetition count or slot count is zero (or does not fit the model).
    BadSettings(&'static str),
    /// The clock did not advance over a timed run, so no rate can be computed.
    ClockStalled {
        test: &'static str,
    },
    /// The batched decode produced a different number of tokens than its steps imply.
    SlotTokens {
        slots: usize,
        tokens: usize,
        steps: usize,
    },
    Model(ModelError),
    Batcher(BatcherError),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSettings(what) => write!(f, "benchmark settings: {what}"),
            Self::ClockStalled { test } => {
                write!(f, "the clock did not advance during a {test} run")
            }
            Self::SlotTokens {
                slots,
                tokens,
                steps,
            } => write!(f, "{slots} slots produced {tokens} tokens in {steps} steps"),
            Self::Model(error) => write!(f, "model: {error}"),
            Self::Batcher(error) => write!(f, "batcher: {error}"),
        }
    }
}

impl core::error::Error for BenchError {}

impl From<ModelError> for BenchError {
    fn from(error: ModelError) -> Self {
        Self::Model(error)
    }
}

impl From<BatcherError> for BenchError {
    fn from(error: BatcherError) -> Self {
        Self::Batcher(error)
    }
}
