//! Ward's inference engine: a `no_std` + `alloc` LLaMA runtime that the enclave kernel runs
//! unchanged and that is tested on the host.
//!
//! - [`gguf`]: validated GGUF reader over a byte slice.
//! - [`quant`]: block formats and activation quantization.
//! - [`kernels`]: scalar / AVX2 / AVX-512 matrix products, picked once via [`cpu`].
//! - [`model`]: the LLaMA forward pass over a per-sequence [`model::Context`].
//! - [`batcher`]: fixed-slot continuous batching, one batched forward pass per step.
//! - [`bench`]: prompt, decode and batched-decode speed, shared by `ward bench` and the enclave.
#![cfg_attr(not(test), no_std)]

extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod batcher;
pub mod bench;
pub mod chat;
pub mod cpu;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod parallel;
pub mod quant;
pub mod sampler;
pub mod tokenizer;
