//! x86-64 specifics: CPU features and SIMD level, paging, the TSC, randomness and, on bare
//! metal, descriptor tables, exceptions, ports and control registers.

pub mod apic;
pub mod cpu_features;
#[cfg(target_os = "none")]
pub mod exceptions;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod idt;
#[cfg(target_arch = "x86_64")]
pub mod mmio;
pub mod paging;
#[cfg(target_os = "none")]
pub mod port;
pub mod random;
#[cfg(target_os = "none")]
pub mod registers;
pub mod simd;
pub mod smp;
pub mod tsc;
