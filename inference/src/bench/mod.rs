//! The engine's speed, measured the way llama.cpp's `llama-bench` measures it, without `std`:
//! the host's `ward bench` and the enclave's benchmark boot option run this same code, so their
//! tables mean the same thing.
//!
//! - Prompt processing: `prompt` tokens in one forward pass into an empty context.
//! - Decoding: `generate` tokens fed one at a time from an empty context.
//! - Batched decoding ([`measure_slots`]): `S` busy slots of the [`crate::batcher::Batcher`],
//!   each holding a short prompt, then `generate` batched steps of one token per slot; the
//!   figure is the aggregate tokens/s over all slots.
//!
//! Every test runs once as a warm-up, then `repetitions` timed runs; a figure is the mean and
//! sample standard deviation of the per-run tokens/s. Time comes from a [`Clock`] the caller
//! supplies (the host's monotonic clock, the enclave's TSC), read only around the timed work.
//! The caller picks the [`crate::parallel::Executor`] of each thread count; [`run`] measures
//! everything into a [`BenchReport`] (or call [`measure_threads`] / [`measure_slots`] one at a
//! time), which prints the table and the JSON object.

mod clock;
mod error;
mod measure;
mod report;
mod run;
mod stats;

pub use clock::Clock;
pub use error::BenchError;
pub use measure::{Settings, measure_slots, measure_threads, slot_batcher_config, token_ids};
pub use report::{BenchReport, SlotFigures, ThreadFigures};
pub use run::run;
pub use stats::Stats;
