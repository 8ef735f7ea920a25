//! Launch-measurement calculators: what a correctly launched Ward image must measure to, computed
//! offline from the image file, so a client or an auditor can put the value in an allowlist.
//!
//! - [`firmware`]: the OVMF-style GUID table at the end of a firmware image and the SEV
//!   ("ASEV") and TDX ("TDVF") metadata it points to.
//! - [`snp`]: the SEV-SNP launch digest (`MEASUREMENT`), byte for byte what `sev-snp-measure
//!   --mode snp` computes for QEMU.
//! - [`tdx`]: the TDX `MRTD` as the TDX module builds it from `TDH.MEM.PAGE.ADD` and
//!   `TDH.MR.EXTEND`.
//! - [`config`]: the digests that bind the deployment configuration (`HOST_DATA`, `MRCONFIGID`).

pub mod config;
mod error;
pub mod firmware;
pub mod snp;
pub mod tdx;

pub use error::MeasureError;

/// Size of a guest page.
pub const PAGE_SIZE: u64 = 4096;
