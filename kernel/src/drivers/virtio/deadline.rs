//! Timeouts for polling a device, from the TSC. A dead or hostile device must turn into an error,
//! never a hang; the exact length does not matter, so before the TSC is calibrated a nominal
//! frequency stands in.

use crate::arch::tsc;

/// Used when the TSC frequency is unknown: on the slow side of real CPUs, so timeouts only get
/// longer, never shorter than asked.
const FALLBACK_HZ: u64 = 4_000_000_000;

/// TSC ticks in `millis` at `hz` (0 = unknown).
pub const fn ticks_for(millis: u64, hz: u64) -> u64 {
    let hz = if hz == 0 { FALLBACK_HZ } else { hz };
    let ticks = millis as u128 * hz as u128 / 1000;
    if ticks > u64::MAX as u128 {
        u64::MAX
    } else {
        ticks as u64
    }
}

/// A point in TSC time after which polling gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: u64,
    ticks: u64,
    millis: u64,
}

impl Deadline {
    /// `millis` from now.
    pub fn after_millis(millis: u64) -> Self {
        Self {
            start: tsc::rdtsc(),
            ticks: ticks_for(millis, tsc::frequency()),
            millis,
        }
    }

    /// Whether the time is up (wrapping-safe: compares elapsed ticks).
    pub fn expired(&self) -> bool {
        tsc::rdtsc().wrapping_sub(self.start) >= self.ticks
    }

    /// The length asked for, for error messages.
    pub fn millis(&self) -> u64 {
        self.millis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_arithmetic() {
        assert_eq!(ticks_for(1000, 2_000_000_000), 2_000_000_000);
        assert_eq!(ticks_for(5, 0), 20_000_000);
        assert_eq!(ticks_for(u64::MAX, u64::MAX), u64::MAX, "saturates");
    }

    #[test]
    fn deadlines_expire() {
        let zero = Deadline::after_millis(0);
        assert!(zero.expired());
        let long = Deadline::after_millis(60_000);
        assert!(!long.expired());
        assert_eq!(long.millis(), 60_000);
    }
}
