//! Randomness from the CPU (RDSEED, else RDRAND), checked for failure and retried, never from
//! the host (DESIGN §15). This provides seed material only; a DRBG expands it.

use super::cpu_features::CpuFeatures;
use core::arch::asm;

/// Attempts per 64-bit word before giving up (Intel recommends 10 for RDRAND; RDSEED can
/// underflow transiently under load, so it gets more with a pause in between).
const RDRAND_RETRIES: u32 = 10;
const RDSEED_RETRIES: u32 = 100;

/// Why no seed could be produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomError {
    /// The CPU reports neither RDSEED nor RDRAND.
    Unsupported,
    /// The instruction kept failing (CF = 0) past the retry budget.
    Exhausted,
    /// It returned the same word twice in a row or all-zero/all-one words: treated as broken
    /// (some AMD parts returned all ones after suspend).
    Suspicious,
}

fn rdseed() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: only called after CPUID reported RDSEED; the instruction writes a register and
    // CF, nothing else.
    unsafe {
        asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
    };
    (ok == 1).then_some(value)
}

fn rdrand() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: only called after CPUID reported RDRAND; the instruction writes a register and
    // CF, nothing else.
    unsafe {
        asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
    };
    (ok == 1).then_some(value)
}

fn one_word(features: &CpuFeatures) -> Result<u64, RandomError> {
    if features.rdseed {
        for _ in 0..RDSEED_RETRIES {
            if let Some(word) = rdseed() {
                return Ok(word);
            }
            core::hint::spin_loop();
        }
    }
    if features.rdrand {
        for _ in 0..RDRAND_RETRIES {
            if let Some(word) = rdrand() {
                return Ok(word);
            }
        }
    }
    if features.rdseed || features.rdrand {
        Err(RandomError::Exhausted)
    } else {
        Err(RandomError::Unsupported)
    }
}

/// 32 bytes of seed material from the CPU.
pub fn seed(features: &CpuFeatures) -> Result<[u8; 32], RandomError> {
    let mut words = [0u64; 4];
    for i in 0..words.len() {
        words[i] = one_word(features)?;
        if words[i] == 0 || words[i] == u64::MAX || (i > 0 && words[i] == words[i - 1]) {
            return Err(RandomError::Suspicious);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_absence_is_reported() {
        let features = CpuFeatures::detect();
        if features.rdrand || features.rdseed {
            let a = seed(&features).unwrap();
            let b = seed(&features).unwrap();
            assert_ne!(a, b);
        }
        assert_eq!(seed(&CpuFeatures::default()), Err(RandomError::Unsupported));
    }
}
