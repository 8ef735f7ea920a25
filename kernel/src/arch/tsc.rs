//! The time-stamp counter as the kernel's clock for logs and cadence (never for security).
//!
//! Frequency: CPUID leaf 0x15 when it states the crystal frequency (exact), otherwise measured
//! against PIT channel 2 over 10 ms (QEMU does not fill leaf 0x15, so under QEMU it is the PIT).

use core::arch::x86_64::__cpuid_count;
use core::sync::atomic::{AtomicU64, Ordering};

/// How the frequency was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibration {
    /// CPUID leaf 0x15 (crystal clock ratio).
    Cpuid15,
    /// Measured against the 8254 PIT.
    Pit,
}

impl Calibration {
    /// For the boot log.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Cpuid15 => "CPUID leaf 0x15",
            Self::Pit => "PIT channel 2 over 10 ms",
        }
    }
}

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// TSC frequency from CPUID leaf 0x15 (EAX = denominator, EBX = numerator, ECX = crystal Hz),
/// `None` when any is zero (not enumerated).
pub const fn hz_from_cpuid15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    Some(ecx as u64 * ebx as u64 / eax as u64)
}

/// TSC frequency from `tsc_ticks` elapsed while the PIT counted `pit_ticks`.
pub const fn hz_from_pit(tsc_ticks: u64, pit_ticks: u64) -> Option<u64> {
    if pit_ticks == 0 || tsc_ticks == 0 {
        return None;
    }
    Some((tsc_ticks as u128 * PIT_HZ as u128 / pit_ticks as u128) as u64)
}

/// Reads the TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; CR4.TSD is clear in kernel mode either way.
    unsafe { core::arch::x86_64::_rdtsc() }
}

static START_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Records the kernel's time zero.
pub fn mark_start() {
    START_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// Sets the frequency once found.
pub fn set_frequency(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}

/// The frequency, 0 before calibration.
pub fn frequency() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Microseconds since [`mark_start`] (0 before calibration).
pub fn micros_since_start() -> u64 {
    let hz = frequency();
    if hz == 0 {
        return 0;
    }
    let ticks = rdtsc().wrapping_sub(START_TSC.load(Ordering::Relaxed));
    (ticks as u128 * 1_000_000 / hz as u128) as u64
}

/// The frequency from CPUID leaf 0x15, if the CPU states it.
pub fn cpuid15_frequency() -> Option<u64> {
    if __cpuid_count(0, 0).eax < 0x15 {
        return None;
    }
    let leaf = __cpuid_count(0x15, 0);
    hz_from_cpuid15(leaf.eax, leaf.ebx, leaf.ecx)
}

/// Measures the TSC against PIT channel 2 (one-shot, 10 ms), bare metal only.
#[cfg(target_os = "none")]
pub fn pit_frequency() -> Option<u64> {
    use super::port::{inb, outb};
    const PIT_TICKS: u64 = PIT_HZ / 100;
    // SAFETY: ports 0x61 (NMI status/control: speaker gate), 0x43 (PIT mode) and 0x42 (PIT
    // channel 2) belong to the chipset's PIT, which nothing else in the kernel uses; the speaker
    // output stays disabled.
    unsafe {
        let control = inb(0x61);
        outb(0x61, (control & !0x02) | 0x01); // gate on, speaker off
        outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        outb(0x42, PIT_TICKS as u8);
        outb(0x42, (PIT_TICKS >> 8) as u8);
        let start = rdtsc();
        let mut spins: u64 = 0;
        // OUT2 (bit 5) goes high when the count reaches zero; the spin bound catches a missing
        // PIT instead of hanging the boot.
        while inb(0x61) & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
        }
        let end = rdtsc();
        outb(0x61, control);
        hz_from_pit(end.wrapping_sub(start), PIT_TICKS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_arithmetic() {
        // A 25 MHz crystal with ratio 2:120 (EAX=2, EBX=120) → 1.5 GHz.
        assert_eq!(hz_from_cpuid15(2, 120, 25_000_000), Some(1_500_000_000));
        assert_eq!(hz_from_cpuid15(0, 120, 25_000_000), None);
        assert_eq!(hz_from_cpuid15(2, 120, 0), None);
        // 29.94 M TSC ticks over 11931 PIT ticks (≈10 ms) → ≈2.994 GHz.
        let hz = hz_from_pit(29_940_000, 11_931).unwrap();
        assert!((2_994_000_000..2_995_000_000).contains(&hz), "{hz}");
        assert_eq!(hz_from_pit(1, 0), None);
        assert_eq!(hz_from_pit(u64::MAX, 1).map(|h| h > 0), Some(true));
    }

    #[test]
    fn clock_runs_after_calibration() {
        mark_start();
        assert_eq!(micros_since_start(), 0);
        set_frequency(1_000_000_000);
        let before = micros_since_start();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(micros_since_start() > before);
    }
}
