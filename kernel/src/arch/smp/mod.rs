//! Symmetric multiprocessing: find the CPUs, start the application processors (APs), give each
//! its own GDT/TSS/IDT and guarded stacks with the boot CPU's SIMD state, and run them as the
//! [`pool::CpuPool`] workers of the inference engine.
//!
//! 1. CPUs: the enabled local APIC / x2APIC IDs of the ACPI MADT, read from fw_cfg
//!    `etc/acpi/tables` ([`madt`], [`fw_cfg`]). Without it the kernel runs on one CPU.
//! 2. For each AP, in MADT order, one at a time: map its stacks ([`stacks`]), then ask the
//!    platform to start it ([`crate::platform::Platform::start_application_processor`]: native
//!    sends INIT, start-up, start-up to the real-mode [`trampoline`]; SNP and TDX have their own
//!    mechanisms behind the same seam). The AP enters `ward_ap_long_mode` (`entry.s`) on its
//!    stack with the kernel's tables, then [`ap_main`]: GDT/TSS with its own IST stacks, IDT,
//!    per-CPU record, a check that XCR0 equals the boot CPU's, APIC on; then it checks in.
//! 3. The boot CPU waits for each check-in ([`AP_START_TIMEOUT_MICROS`]); an AP that does not
//!    check in in time is abandoned (if it arrives later it finds that out and halts), and no
//!    further AP is started, since the trampoline's parameters cannot be reused safely while a
//!    late AP might still read them.

#[cfg(target_os = "none")]
pub mod fw_cfg;
pub mod madt;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod pool;
#[cfg(target_os = "none")]
pub mod selftest;
#[cfg(target_os = "none")]
pub mod stacks;
#[cfg(target_os = "none")]
mod startup;
pub mod trampoline;

#[cfg(target_os = "none")]
pub use startup::{
    AP_START_TIMEOUT_MICROS, SmpError, SmpSummary, TopologyError, delay_micros, start,
    start_with_sipi,
};
