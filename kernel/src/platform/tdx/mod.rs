//! Intel TDX (DESIGN §5): the kernel as a trust domain. Implemented against the TDX Module ABI
//! and the GHCI specifications; it has never run on TDX hardware (docs/confidential-guests.md).
//!
//! What runs in a TD, in order:
//! 1. `platform::Tdx::new` (at boot, before the kernel's page tables): CPUID leaf 0x21 must
//!    name the TDX module; TDG.VP.INFO gives the GPA width, whose shared bit must equal the
//!    loader's `platform_info.encryption_mask`, and the ATTRIBUTES, which must have
//!    SEPT_VE_DISABLE (as Linux requires: else the host can raise a #VE at any private access);
//!    the XSAVE area the #VE entry uses must fit; the
//!    deployment configuration must hash (SHA-384) to MRCONFIGID of the TD's own TDREPORT, else
//!    the kernel refuses to run (DESIGN §4).
//! 2. The shared pool is converted with MapGPA ([`convert`]); `shared_pte_mask` is the shared
//!    bit, so `kernel_space::build` maps the pool and the MMIO windows with it.
//! 3. The kernel IDT's vector 20 is the #VE entry (`entry.rs`, `ve_entry.s`) on the
//!    virtualization IST stack. [`ve::handle`] reads TDG.VP.VEINFO.GET and emulates CPUID, HLT,
//!    RDMSR/WRMSR, port I/O and MMIO through TDG.VP.VMCALL; everything else stops the TD.
//! 4. Evidence: TDG.MR.REPORT over the session's REPORT_DATA, then GetQuote through a shared
//!    buffer ([`quote`]), checked by `ward_attestation::guest::provider::TdxEvidence`.
//! 5. Once a model is loaded and verified, its SHA-384 extends RTMR 2 (TDG.MR.RTMR.EXTEND). A
//!    verifier expects `RTMR2 = replay([model SHA-384])` (`ward_attestation::guest::tdx::rtmr`,
//!    `MODEL_RTMR`): one extension per boot, since a loaded model is never replaced.
//!
//! Application processors are not started on TDX (the ACPI MP wake-up mailbox is not written):
//! `start_application_processor` keeps the trait's `Unsupported`, and the kernel runs on the
//! boot CPU.
//!
//! The protocol logic ([`setup`], [`ve`], [`convert`], [`quote`]) runs over the [`TdCall`] trait and is
//! tested on the host against simulated TDX modules and hosts; only the TDCALL instruction and
//! the entry stub are bare-metal.

pub mod convert;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod hardware;
#[cfg(target_os = "none")]
pub mod platform;
pub mod quote;
pub mod setup;
pub mod ve;

#[cfg(target_os = "none")]
pub use entry::ve_entry_address;

use core::fmt;
use ward_attestation::guest::provider::PlatformEvidenceError;
use ward_attestation::guest::tdx::tdcall::{TdcallError, TdcallRegisters};

/// One TDCALL: the registers go in, the TDX module's (or, through TDG.VP.VMCALL, the host's)
/// answer comes back in the same structure.
pub trait TdCall {
    /// Executes TDCALL with `registers`, replacing them with the outputs.
    fn call(&mut self, registers: &mut TdcallRegisters);
}

/// Why the TDX platform refused to start or an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TdxError {
    /// The boot information says TDX but CPUID leaf 0x21 does not name the TDX module.
    NotATrustDomain,
    /// TDG.VP.INFO failed or gave an impossible GPA width.
    VpInfo(TdcallError),
    /// The loader's shared bit differs from the one TDG.VP.INFO implies.
    SharedBitMismatch {
        /// What the loader handed over.
        loader: u64,
        /// What the TDX module says.
        module: u64,
    },
    /// The TD was launched without ATTRIBUTES.SEPT_VE_DISABLE: the host could then raise a #VE
    /// on any private access, anywhere in the kernel.
    SeptVeEnabled {
        /// TD ATTRIBUTES from TDG.VP.INFO.
        attributes: u64,
    },
    /// The XSAVE area for the enabled state components exceeds what the #VE entry reserves.
    XsaveTooLarge {
        /// CPUID.(0xD, 0).EBX.
        bytes: u32,
    },
    /// TDG.MR.REPORT failed.
    Report(TdcallError),
    /// TDG.MR.RTMR.EXTEND failed.
    Extend(TdcallError),
    /// The TD's own TDREPORT does not parse.
    OwnReportMalformed,
    /// The deployment configuration's SHA-384 is not MRCONFIGID.
    ConfigMismatch,
    /// A page conversion failed.
    Convert(convert::ConvertError),
    /// The quote could not be obtained or did not match our TDREPORT.
    Evidence(PlatformEvidenceError),
}

impl fmt::Display for TdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotATrustDomain => f.write_str(
                "boot information says TDX, but CPUID leaf 0x21 does not name the TDX module",
            ),
            Self::VpInfo(e) => write!(f, "TDG.VP.INFO: {e}"),
            Self::SharedBitMismatch { loader, module } => write!(
                f,
                "shared bit {loader:#x} from the loader differs from {module:#x} (TDG.VP.INFO)"
            ),
            Self::SeptVeEnabled { attributes } => write!(
                f,
                "TD ATTRIBUTES {attributes:#x} lack SEPT_VE_DISABLE (launch with sept-ve-disable=on)"
            ),
            Self::XsaveTooLarge { bytes } => write!(
                f,
                "the XSAVE area needs {bytes} bytes, more than the {} the #VE entry reserves",
                XSAVE_AREA_BYTES
            ),
            Self::Report(e) => write!(f, "TDG.MR.REPORT: {e}"),
            Self::Extend(e) => write!(f, "TDG.MR.RTMR.EXTEND: {e}"),
            Self::OwnReportMalformed => f.write_str("the TD's own TDREPORT does not parse"),
            Self::ConfigMismatch => f.write_str(
                "the deployment configuration's SHA-384 is not MRCONFIGID of this TD; refusing to run",
            ),
            Self::Convert(e) => write!(f, "{e}"),
            Self::Evidence(e) => write!(f, "{e}"),
        }
    }
}

/// TD ATTRIBUTES bit 28: EPT violations on private memory exit to the host instead of raising
/// a #VE in the TD.
pub const ATTRIBUTE_SEPT_VE_DISABLE: u64 = 1 << 28;

/// Bytes the #VE entry reserves on its stack for XSAVE (`ve_entry.s`); x87, SSE, AVX and
/// AVX-512 state take 2688.
pub const XSAVE_AREA_BYTES: u32 = 4096;
