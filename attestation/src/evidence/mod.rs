//! Hardware evidence formats, parsed without trusting a single byte: every length is checked
//! against the input before use and every malformed file gives an [`EvidenceError`].
//!
//! - [`snp`]: the AMD SEV-SNP `ATTESTATION_REPORT` (SEV-SNP Firmware ABI 56860, versions 2, 3, 5).
//! - [`tdx`]: the Intel TDX DCAP quote (versions 4 and 5) and the `TDREPORT` a TD gets from
//!   `TDG.MR.REPORT`.
//! - [`encoding`]: evidence files come as raw binary or hex text; this tells them apart.

pub mod encoding;
mod error;
mod reader;
pub mod snp;
pub mod tdx;

pub use error::EvidenceError;
