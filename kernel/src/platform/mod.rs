//! The confidential-computing platform seam (DESIGN §5). Everything outside this module is
//! platform-free and talks to the platform only through [`Platform`]; `native.rs` is the plain
//! VM implementation, `snp/` and `tdx/` come with their issue.
//!
//! The surface is deliberately small — what memory set-up, the shared pool, the attestation
//! session and the DRBG need:
//! - page-table masks for private and shared memory (SNP C-bit, TDX shared bit);
//! - converting pages between private and shared (SNP page-state change + PVALIDATE, TDX
//!   MapGPA + accept);
//! - evidence for a 64-byte REPORT_DATA;
//! - seed material for the DRBG.

pub mod native;

use crate::mm::address::PhysRange;
use core::fmt;
use ward_bootinfo::PlatformKind;

/// Why a platform operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The range is not page aligned or is empty.
    BadRange(PhysRange),
    /// The CPU's random source failed.
    Random(crate::arch::random::RandomError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange(range) => write!(f, "range {range} is not whole pages"),
            Self::Random(error) => write!(f, "CPU random source failed: {error:?}"),
        }
    }
}

/// Evidence binding `report_data` to this launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// No hardware root of trust (native): only the report data, which the session layer wraps
    /// into a report clearly marked as simulated together with the loader's measurement log.
    /// Clients accept it only with `--allow-simulated`.
    Simulated {
        /// The REPORT_DATA asked for.
        report_data: [u8; 64],
    },
}

/// One confidential-computing platform.
pub trait Platform: Sync {
    /// Which platform this is.
    fn kind(&self) -> PlatformKind;

    /// Name for logs (`native`, `snp`, `tdx`).
    fn name(&self) -> &'static str;

    /// Bits ORed into page-table entries of private memory (SNP: the C-bit; else 0).
    fn private_pte_mask(&self) -> u64;

    /// Bits ORed into page-table entries of host-visible memory and MMIO (TDX: the shared
    /// bit; else 0).
    fn shared_pte_mask(&self) -> u64;

    /// Makes `range` host-visible. Its previous contents are lost; callers map it with
    /// [`Self::shared_pte_mask`] only and never keep a private mapping of it.
    fn share(&self, range: PhysRange) -> Result<(), PlatformError>;

    /// Makes `range` private again (its shared contents are discarded).
    fn unshare(&self, range: PhysRange) -> Result<(), PlatformError>;

    /// Evidence over `report_data` (SHA-512 of the session transcript, DESIGN §11).
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, PlatformError>;

    /// 32 bytes of seed material from a source the host cannot control.
    fn random_seed(&self) -> Result<[u8; 32], PlatformError>;
}

/// Checks that a range to convert is non-empty whole pages.
pub(crate) fn check_pages(range: PhysRange) -> Result<(), PlatformError> {
    let page = crate::mm::address::PAGE_SIZE;
    if range.is_empty() || !range.start.is_aligned(page) || !range.end.is_aligned(page) {
        return Err(PlatformError::BadRange(range));
    }
    Ok(())
}
