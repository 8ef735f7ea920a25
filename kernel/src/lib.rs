//! Ward's unikernel (DESIGN §3–§6): entered from the loader with a [`ward_bootinfo::BootInfo`],
//! it sets up its own GDT/IDT, W^X page tables with guarded stacks, the heap and the shared
//! pool, finds its devices and reports what it found.
//!
//! The pure parts (address types, page-table construction, frame allocation, the shared pool's
//! bookkeeping, PCI decoding, SIMD selection, TSC arithmetic) build and are tested on the host;
//! everything that touches hardware is `#[cfg(target_os = "none")]`. The binary (`main.rs`) only
//! holds the entry stub.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
#[cfg(target_os = "none")]
pub mod boot;
pub mod drivers;
pub mod exit;
#[cfg(target_os = "none")]
pub mod logger;
pub mod mm;
#[cfg(target_os = "none")]
mod panic;
pub mod platform;
pub mod report;
#[cfg(target_os = "none")]
pub mod serial;
pub mod service;

/// The kernel's version, printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
