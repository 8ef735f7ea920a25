//! The bare-metal half: register access and the IPIs.

use super::{ApicError, ApicMode, LocalApic, SPURIOUS_VECTOR};
use crate::arch::registers::{rdmsr, wrmsr};
use core::arch::x86_64::__cpuid_count;

const IA32_APIC_BASE: u32 = 0x1b;
const BASE_X2APIC_ENABLE: u64 = 1 << 10;
const BASE_GLOBAL_ENABLE: u64 = 1 << 11;
const BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// x2APIC MSRs are `0x800 + (xAPIC register offset >> 4)`.
const X2APIC_MSR_BASE: u32 = 0x800;
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SPURIOUS: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;

const SPURIOUS_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// Polls of the xAPIC delivery-status bit before giving up on an IPI.
const DELIVERY_POLLS: u32 = 1_000_000;

/// The window the kernel maps uncached for local-APIC MMIO (`kernel_space::HIGH_MMIO`).
const XAPIC_WINDOW: core::ops::Range<u64> = 0xfe00_0000..0x1_0000_0000;

/// Whether CPUID reports an x2APIC.
fn has_x2apic() -> bool {
    __cpuid_count(1, 0).ecx & (1 << 21) != 0
}

impl LocalApic {
    /// Puts this CPU's APIC in the best mode it has (x2APIC if available) and returns it.
    /// Called on the boot CPU once; each application processor then uses [`Self::enter`] with
    /// the boot CPU's mode so every CPU speaks the same one.
    pub fn detect() -> Result<Self, ApicError> {
        if __cpuid_count(1, 0).edx & (1 << 9) == 0 {
            return Err(ApicError::Absent);
        }
        let mode = if has_x2apic() {
            ApicMode::X2Apic
        } else {
            // SAFETY: CPUID reports an APIC, so IA32_APIC_BASE exists.
            let base = unsafe { rdmsr(IA32_APIC_BASE) } & BASE_ADDRESS_MASK;
            ApicMode::XApic(base)
        };
        Self::enter(mode)
    }

    /// Switches this CPU's APIC to `mode` (globally enabled; x2APIC if asked).
    pub fn enter(mode: ApicMode) -> Result<Self, ApicError> {
        // SAFETY: every CPU that reaches here reported an APIC (the boot CPU checked CPUID and
        // all CPUs of a VM have the same model), so the MSR exists.
        let base = unsafe { rdmsr(IA32_APIC_BASE) };
        let wanted = match mode {
            ApicMode::X2Apic => base | BASE_GLOBAL_ENABLE | BASE_X2APIC_ENABLE,
            ApicMode::XApic(address) => {
                if !XAPIC_WINDOW.contains(&address) || base & BASE_ADDRESS_MASK != address {
                    return Err(ApicError::BaseOutsideWindow(base & BASE_ADDRESS_MASK));
                }
                base | BASE_GLOBAL_ENABLE
            }
        };
        if wanted != base {
            // x2APIC must be entered from the enabled xAPIC state (SDM 11.12.5): enable first.
            // SAFETY: setting the global-enable bit, then the x2APIC bit (CPUID reports it when
            // asked for), are the architectural transitions out of reset state.
            unsafe {
                wrmsr(IA32_APIC_BASE, base | BASE_GLOBAL_ENABLE);
                wrmsr(IA32_APIC_BASE, wanted);
            }
        }
        Ok(Self { mode })
    }

    /// The mode in use.
    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// This CPU's APIC ID.
    pub fn id(&self) -> u32 {
        match self.mode {
            ApicMode::X2Apic => self.read(REG_ID),
            ApicMode::XApic(_) => self.read(REG_ID) >> 24,
        }
    }

    /// Software-enables the APIC so it accepts fixed interrupts, with [`SPURIOUS_VECTOR`].
    pub fn enable(&self) {
        let value = self.read(REG_SPURIOUS);
        self.write(
            REG_SPURIOUS,
            (value & !0xff) | SPURIOUS_ENABLE | u32::from(SPURIOUS_VECTOR),
        );
    }

    /// Signals the end of the interrupt being handled.
    pub fn end_of_interrupt(&self) {
        self.write(REG_EOI, 0);
    }

    /// Sends INIT (level assert) to `apic_id`.
    pub fn send_init(&self, apic_id: u32) -> Result<(), ApicError> {
        self.send(apic_id, ICR_INIT | ICR_LEVEL_ASSERT)
    }

    /// Sends a start-up IPI: the target starts in real mode at `page_number << 12`.
    pub fn send_startup(&self, apic_id: u32, page_number: u8) -> Result<(), ApicError> {
        self.send(
            apic_id,
            ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page_number),
        )
    }

    /// Sends a fixed interrupt with `vector` to `apic_id`.
    pub fn send_fixed(&self, apic_id: u32, vector: u8) -> Result<(), ApicError> {
        self.send(apic_id, ICR_FIXED | ICR_LEVEL_ASSERT | u32::from(vector))
    }

    fn send(&self, apic_id: u32, command: u32) -> Result<(), ApicError> {
        match self.mode {
            ApicMode::X2Apic => {
                // SAFETY: the x2APIC ICR MSR exists in x2APIC mode; one 64-bit write sends.
                unsafe {
                    wrmsr(
                        X2APIC_MSR_BASE + (REG_ICR_LOW >> 4),
                        (u64::from(apic_id) << 32) | u64::from(command),
                    )
                };
                Ok(())
            }
            ApicMode::XApic(_) => {
                let id = u8::try_from(apic_id).map_err(|_| ApicError::IdOutOfRange(apic_id))?;
                self.wait_idle()?;
                self.write(REG_ICR_HIGH, u32::from(id) << 24);
                self.write(REG_ICR_LOW, command);
                self.wait_idle()
            }
        }
    }

    fn wait_idle(&self) -> Result<(), ApicError> {
        for _ in 0..DELIVERY_POLLS {
            if self.read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(ApicError::DeliveryTimeout)
    }

    fn read(&self, register: u32) -> u32 {
        match self.mode {
            // SAFETY: `register` is one of the architectural APIC registers above, readable in
            // x2APIC mode; the upper half of these MSRs is reserved.
            ApicMode::X2Apic => unsafe { rdmsr(X2APIC_MSR_BASE + (register >> 4)) as u32 },
            // SAFETY: the xAPIC page lies in the kernel's uncached identity-mapped MMIO window
            // (checked in `enter`), and `register` is an aligned 32-bit register in it.
            ApicMode::XApic(base) => unsafe {
                <u32 as crate::arch::mmio::Register>::load(
                    (base + u64::from(register)) as *const u32,
                )
            },
        }
    }

    fn write(&self, register: u32, value: u32) {
        match self.mode {
            // SAFETY: as for `read`; these registers are writable.
            ApicMode::X2Apic => unsafe {
                wrmsr(X2APIC_MSR_BASE + (register >> 4), u64::from(value))
            },
            // SAFETY: as for `read`.
            ApicMode::XApic(base) => unsafe {
                <u32 as crate::arch::mmio::Register>::store(
                    (base + u64::from(register)) as *mut u32,
                    value,
                )
            },
        }
    }
}
