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
//! - seed material for the DRBG;
//! - starting an application processor (native: INIT-SIPI-SIPI; SNP: a VMSA and the GHCB
//!   AP-creation request; TDX: the MP wake-up mailbox) — the one seam of SMP start-up.

pub mod native;
pub mod snp;
pub mod tdx;

use crate::arch::apic::{ApicError, LocalApic};
use crate::mm::address::{PhysRange, VirtAddr};
use core::fmt;
use ward_bootinfo::PlatformKind;

/// Why a platform operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The range is not page aligned or is empty.
    BadRange(PhysRange),
    /// The CPU's random source failed.
    Random(crate::arch::random::RandomError),
    /// A TDX operation failed.
    Tdx(tdx::TdxError),
    /// An SEV-SNP operation failed.
    Snp(snp::SnpError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange(range) => write!(f, "range {range} is not whole pages"),
            Self::Random(error) => write!(f, "CPU random source failed: {error:?}"),
            Self::Tdx(error) => write!(f, "TDX: {error}"),
            Self::Snp(error) => write!(f, "SEV-SNP: {error}"),
        }
    }
}

/// How an application processor is to be started (built by `arch::smp`).
///
/// Native (and SEV-ES-less KVM) starts the AP in real mode at the trampoline page, which goes
/// to long mode and jumps to `long_mode_entry`. Platforms that create APs directly in long mode
/// (SNP: a VMSA with the target's register state; TDX: the mailbox hands the AP a 64-bit entry)
/// start them at `long_mode_entry` instead, with `rdi = argument`, `rdx =` the kernel's CR3
/// (the current CR3), `rsp = stack_top`, paging on with tables mapping the kernel's upper half.
#[derive(Clone, Copy, Debug)]
pub struct ApStartup {
    /// The boot CPU's local APIC (to send IPIs).
    pub apic: LocalApic,
    /// The start-up IPI vector: the real-mode trampoline's page number (below 1 MiB).
    pub trampoline_vector: u8,
    /// Whether the trampoline has started running since it was prepared for this AP.
    pub trampoline_alive: fn() -> bool,
    /// The AP's 64-bit entry (`ward_ap_long_mode` in kernel text).
    pub long_mode_entry: VirtAddr,
    /// The AP's kernel stack top.
    pub stack_top: VirtAddr,
    /// The value for `rdi` (the AP's boot record).
    pub argument: u64,
}

/// Why an application processor could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApStartError {
    /// The platform has no AP start-up yet (SNP and TDX until their mechanism is written).
    Unsupported {
        /// The platform's name.
        platform: &'static str,
    },
    /// Sending an IPI failed.
    Apic(ApicError),
}

impl fmt::Display for ApStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { platform } => {
                write!(
                    f,
                    "starting application processors is not supported on {platform}"
                )
            }
            Self::Apic(error) => write!(f, "local APIC: {error}"),
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
    /// Hardware evidence (SNP report, TDX quote) as the session protocol carries it.
    Platform(ward_attestation::protocol::Evidence),
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

    /// Records the SHA-384 of the model just loaded and verified in a runtime measurement
    /// register, so the platform's evidence names the model that answers (TDX: RTMR 2). The
    /// default, for platforms without one (native, SNP: the session transcript binds the model
    /// digest), records nothing.
    fn record_model(&self, sha384: &[u8; 48]) -> Result<(), PlatformError> {
        log::info!(
            "{}: no runtime measurement register; the model digest {} is bound by the session transcript only",
            self.name(),
            crate::report::Hex(sha384)
        );
        Ok(())
    }

    /// Starts the application processor `apic_id` as `startup` describes, without waiting for
    /// it (the caller waits for its check-in). Native sends INIT and start-up IPIs to the
    /// trampoline. SNP must create a VMSA for the AP (entry state from `startup`, VMSA page
    /// validated and marked as such with RMPADJUST) and ask the hypervisor with the GHCB
    /// AP-creation NAE event; TDX must write the entry to the ACPI MP wake-up mailbox. Until a
    /// platform implements it, this default refuses, and the kernel runs on the boot CPU alone.
    fn start_application_processor(
        &self,
        apic_id: u32,
        startup: &ApStartup,
    ) -> Result<(), ApStartError> {
        let _ = (apic_id, startup);
        Err(ApStartError::Unsupported {
            platform: self.name(),
        })
    }
}

/// Checks that a range to convert is non-empty whole pages.
pub(crate) fn check_pages(range: PhysRange) -> Result<(), PlatformError> {
    let page = crate::mm::address::PAGE_SIZE;
    if range.is_empty() || !range.start.is_aligned(page) || !range.end.is_aligned(page) {
        return Err(PlatformError::BadRange(range));
    }
    Ok(())
}
