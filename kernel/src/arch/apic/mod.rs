//! The local APIC, in x2APIC mode (MSRs) where the CPU has it, else xAPIC (MMIO at the base the
//! `IA32_APIC_BASE` MSR names): the CPU's own ID, INIT / start-up / fixed IPIs, end of
//! interrupt. Interrupts stay off on the boot CPU; the application processors take exactly one
//! kind, the pool's wake-up IPI (see `arch::smp::pool`).

use core::fmt;

#[cfg(target_os = "none")]
mod hardware;

/// The spurious-interrupt vector programmed into every enabled APIC.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// How the local APIC is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// Registers as MSRs, 32-bit IDs.
    X2Apic,
    /// Registers in an MMIO page at this physical (and identity-mapped) address, 8-bit IDs.
    XApic(u64),
}

/// Why the local APIC cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID reports no local APIC.
    Absent,
    /// The xAPIC page lies outside the MMIO window the kernel maps.
    BaseOutsideWindow(u64),
    /// An ID does not fit the mode (xAPIC IDs are 8 bits).
    IdOutOfRange(u32),
    /// An xAPIC IPI stayed pending.
    DeliveryTimeout,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => f.write_str("CPUID reports no local APIC"),
            Self::BaseOutsideWindow(base) => {
                write!(
                    f,
                    "xAPIC registers at {base:#x}, outside the mapped MMIO window"
                )
            }
            Self::IdOutOfRange(id) => write!(f, "APIC ID {id} does not fit xAPIC mode"),
            Self::DeliveryTimeout => f.write_str("the IPI stayed pending"),
        }
    }
}

/// The current CPU's local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalApic {
    mode: ApicMode,
}
