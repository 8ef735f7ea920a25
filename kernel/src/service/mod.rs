//! The in-enclave service (DESIGN §10–§12, §14, §15): attested sessions over vsock, model-key
//! release, sealed-model loading, and a scheduler feeding the engine.
//!
//! Everything here except [`kernel`] is platform-free and tested on the host with in-memory
//! sockets and disks and the real client state machine:
//! - [`io`]: the traits the service needs (disk, sockets, clock);
//! - [`load`]: read, authenticate and decrypt the sealed model into private memory;
//! - [`engine`]: the verified model (engine, tokenizer, chat template) and per-slot generation;
//! - [`memory`]: what the slots cost, checked before they are built;
//! - [`scheduler`]: slots, the bounded queue, "busy";
//! - [`serve`]: the loop tying sessions, key release, scheduler and cadence together;
//! - [`bench`]: the benchmark boot option (`bench` in the configuration) on the loaded model;
//! - [`kernel`] (bare metal only): those traits over virtio-blk, virtio-vsock and the TSC,
//!   randomness from the CPU into a ChaCha20 DRBG, simulated evidence, and the loop itself.

pub mod bench;
pub mod engine;
pub mod io;
#[cfg(target_os = "none")]
pub mod kernel;
pub mod load;
pub mod memory;
pub mod scheduler;
pub mod serve;

pub use serve::{SERVICE_PORT, Service, ServiceParams};

#[cfg(test)]
mod tests;
