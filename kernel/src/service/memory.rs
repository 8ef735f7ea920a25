//! Whether the slots fit: the load-time check refuses a model whose batcher would not fit the
//! heap ("needs N MiB, have M MiB") instead of letting an allocation fail — fatal in the
//! kernel — when the slots are built or first used. The batcher's own figures come from
//! [`BatcherMemory`] (`ward_inference::batcher`); this adds what the service keeps for itself.

use core::fmt;
pub use ward_inference::batcher::BatcherMemory;

/// Heap kept free for everything else the service allocates while it serves (sessions, their
/// record buffers, prompts in the queue).
pub const SERVICE_RESERVE: u64 = 8 << 20;

/// The service's view of a batcher's memory.
pub trait SlotsFit {
    /// What must be free for the slots to be built and served: the batcher, the service's
    /// reserve, and the fragmentation margin.
    fn required(&self) -> u64;

    /// `Ok` when `free` heap bytes are enough, else the refusal the session reports.
    fn check(&self, free: u64) -> Result<(), InsufficientMemory>;
}

impl SlotsFit for BatcherMemory {
    fn required(&self) -> u64 {
        self.total()
            .saturating_add(SERVICE_RESERVE)
            .saturating_add(self.largest_buffer)
    }

    fn check(&self, free: u64) -> Result<(), InsufficientMemory> {
        let needed = self.required();
        if needed <= free {
            return Ok(());
        }
        Err(InsufficientMemory {
            needed,
            available: free,
            slots: self.slots,
            capacity: self.capacity,
        })
    }
}

/// The slots do not fit: what they need and what is free once the model's weights are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsufficientMemory {
    /// Bytes the slots need ([`SlotsFit::required`]).
    pub needed: u64,
    /// Bytes free after the engine was built.
    pub available: u64,
    /// Slots configured.
    pub slots: u64,
    /// Positions per slot.
    pub capacity: u64,
}

const MIB: u64 = 1 << 20;

impl fmt::Display for InsufficientMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rounded against the operator: the need up, the memory available down.
        write!(
            f,
            "needs {} MiB, have {} MiB (for {} slots of {} positions beside the weights)",
            self.needed.div_ceil(MIB),
            self.available / MIB,
            self.slots,
            self.capacity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_inference::batcher::BatcherConfig;
    use ward_inference::model::LlamaConfig;

    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            n_layers: 30,
            dim: 576,
            ffn_dim: 1536,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            vocab_size: 49152,
            context_length: 8192,
            rms_eps: 1e-5,
            rope_freq_base: 100_000.0,
            has_output: false,
        }
    }

    fn batcher(slots: usize, capacity: usize) -> BatcherConfig {
        BatcherConfig {
            slots,
            capacity,
            prefill_chunk: 512,
        }
    }

    #[test]
    fn the_check_refuses_with_both_figures() {
        let memory = BatcherMemory::of(&smollm2(), &batcher(8, 1024));
        let needed = memory.required();
        assert_eq!(
            needed,
            memory.total() + SERVICE_RESERVE + memory.largest_buffer
        );
        assert_eq!(memory.check(needed), Ok(()));
        let refusal = memory.check(needed - 1).unwrap_err();
        assert_eq!((refusal.needed, refusal.available), (needed, needed - 1));
        let text = refusal.to_string();
        assert!(
            text.starts_with(&alloc::format!(
                "needs {} MiB, have {} MiB",
                needed.div_ceil(MIB),
                (needed - 1) / MIB
            )),
            "{text}"
        );
        assert!(text.contains("8 slots of 1024 positions"), "{text}");
        // The session's status text carries at most 120 bytes after "model not loaded: ".
        let huge = InsufficientMemory {
            needed: u64::MAX,
            available: u64::MAX - 1,
            slots: 64,
            capacity: 8192,
        };
        assert!(huge.to_string().len() < 120, "{huge}");
    }

    #[test]
    fn absurd_dimensions_are_refused() {
        let config = LlamaConfig {
            n_layers: usize::MAX / 2,
            dim: usize::MAX / 4,
            ..smollm2()
        };
        let memory = BatcherMemory::of(&config, &batcher(64, usize::MAX));
        assert!(memory.check(u64::MAX - 1).is_err());
    }
}
