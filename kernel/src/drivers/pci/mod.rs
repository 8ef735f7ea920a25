//! PCI Express configuration space: decoding (`config`), enumeration (`enumerate`), device names
//! (`names`) and, on bare metal, ECAM access on q35 (`ecam`).

pub mod config;
#[cfg(target_os = "none")]
pub mod ecam;
pub mod enumerate;
pub mod names;

pub use config::{Bdf, ConfigSpace, PciFunction};
