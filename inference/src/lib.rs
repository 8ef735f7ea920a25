//! Ward's inference engine: a `no_std` + `alloc` LLaMA runtime that the enclave kernel runs
//! unchanged and that is tested on the host.
//!
//! - [`gguf`]: validated GGUF reader over a byte slice.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod chat;
pub mod gguf;
pub mod sampler;
pub mod tokenizer;
