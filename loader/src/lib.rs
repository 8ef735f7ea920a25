//! Ward's loader (stage0 firmware), host-testable part: everything that is pure computation.
//!
//! The firmware binary (`src/main.rs`, built for `targets/x86_64-ward.json` by `ward build`) does
//! the hardware work — reset vector, serial port, fw_cfg, CR3 — and calls into these modules:
//! - [`cpu_baseline`]: the CPU features required and the XCR0 value enabled at boot;
//! - [`layout`]: the fixed physical addresses the loader, the packer and the metadata share;
//! - [`image_format`]: the GUID table at the end of the image and the kernel payload entry;
//! - [`elf`]: strict validation of the kernel ELF and its copy into RAM;
//! - [`memory`]: e820 parsing and the BootInfo memory map;
//! - [`paging`]: page-table entries and the hand-over tables;
//! - [`measurement`]: the SHA-384 measurement log;
//! - [`acceptance`]: the walk that accepts private memory (SNP PVALIDATE, TDX page accept);
//! - [`prevalidated`]: SNP: what the launch validated (the image's ASEV metadata), the RAM walk.
#![cfg_attr(not(test), no_std)]

#[cfg(any(test, feature = "test-elf"))]
extern crate alloc;

pub mod acceptance;
pub mod cpu_baseline;
pub mod elf;
pub mod image_format;
pub mod layout;
pub mod measurement;
pub mod memory;
pub mod paging;
pub mod prevalidated;
