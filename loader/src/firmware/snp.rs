//! AMD SEV-SNP in the loader: detection (confirming what `boot.s` decided before the first
//! CPUID), the GHCB page and port I/O through it, CPUID answers from the validated CPUID page,
//! PVALIDATE of all RAM, and termination requests.
//!
//! Implemented against the GHCB specification (56421) and the SNP firmware ABI (56860); it has
//! never run on SNP hardware (docs/confidential-guests.md). On other platforms only
//! [`Snp::start`] runs, sees SEV_STATUS 0 and changes nothing.
//!
//! Port I/O (serial, fw_cfg, isa-debug-exit) goes through explicit GHCB IOIO exits, routed in
//! `cpu.rs`, rather than through a #VC handler: the loader knows every port access it makes, so
//! nothing needs decoding the faulting instruction or saving vector state in an exception entry,
//! and no host-induced #VC can be mistaken for one of ours. Any #VC that still happens (there is
//! no handler) shuts the guest down. The kernel installs its own #VC handler and GHCB before its
//! first port access or CPUID.

use super::cpu;
use super::pool::TablePool;
use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};
use ward_attestation::guest::snp::cpuid_page::{CpuidPageError, CpuidTable};
use ward_attestation::guest::snp::ghcb::{self, Ghcb, GhcbError, GhcbMemory, PortDirection};
use ward_attestation::guest::snp::ghcb_msr::{
    self, MsrProtocolError, PageState, TerminationReason,
};
use ward_attestation::guest::snp::{self as protocol, SnpDetection, SnpDetectionError};
use ward_loader::acceptance::{self, AcceptError, AcceptOutcome, AcceptStats, PageSize};
use ward_loader::cpu_baseline::{self, Missing};
use ward_loader::layout::{self, BOOT_PD0, LARGE_PAGE_SIZE, PAGE_SIZE};
use ward_loader::memory::E820Entry;
use ward_loader::paging::{self, PagingError, TableMemory};
use ward_loader::prevalidated::{self, MetadataError, Prevalidated};

/// The loader's GHCB: the first page of the TD HOB area, which only TDX uses. It was validated
/// at launch (ASEV `SNP_SEC_MEM`), so it is rescinded before it is made shared, and the memory
/// map reports it as reserved: it stays shared after the hand-over.
pub const GHCB_PAGE: u64 = layout::TD_HOB_START;
/// The GHCB page as a range.
pub const GHCB_RANGE: Range<u64> = GHCB_PAGE..GHCB_PAGE + PAGE_SIZE;

// The GHCB lies in the boot tables' first 2 MiB page, the one `set_up_ghcb` splits.
const _: () = assert!(GHCB_PAGE + PAGE_SIZE <= LARGE_PAGE_SIZE);

/// Set once SEV_STATUS shows SEV-ES or SNP: from then on a plain port access would raise #VC.
static SEV_ES_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set once the GHCB is registered and mapped: from then on port I/O goes through it.
static GHCB_READY: AtomicBool = AtomicBool::new(false);

/// Why the SNP set-up failed.
#[derive(Clone, Copy, Debug)]
pub enum SnpError {
    /// The CPUID page is malformed.
    CpuidPage(CpuidPageError),
    /// SEV without SNP, an implausible C-bit, or the CPUID page and hypervisor disagree.
    Detection(SnpDetectionError),
    /// The boot assembly and the Rust check found different C-bit positions.
    CBitDisagrees { assembly: u64, rust: u8 },
    /// A GHCB MSR protocol exchange failed.
    Protocol(MsrProtocolError),
    /// The CPUID page lacks a feature the baseline needs (the assembly should have stopped).
    Baseline(Missing),
    /// XCR0 is not what the CPUID page says it must be.
    Xcr0 { expected: u32, enabled: u64 },
    /// Rescinding the launch validation of the GHCB page failed.
    GhcbRescind(AcceptOutcome),
    /// No table left to split the first 2 MiB for the GHCB mapping.
    PageTables(PagingError),
    /// The image's ASEV metadata is unusable.
    Metadata(MetadataError),
    /// Validating RAM failed (including a page that was already validated).
    Validate(AcceptError),
}

impl fmt::Display for SnpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CpuidPage(e) => write!(f, "CPUID page: {e}"),
            Self::Detection(e) => write!(f, "{e}"),
            Self::CBitDisagrees { assembly, rust } => write!(
                f,
                "boot assembly found C-bit {assembly}, the Rust check {rust}"
            ),
            Self::Protocol(e) => write!(f, "GHCB MSR protocol: {e}"),
            Self::Baseline(e) => write!(f, "validated CPUID page: {e}"),
            Self::Xcr0 { expected, enabled } => {
                write!(
                    f,
                    "XCR0 is {enabled:#x}, the CPUID page calls for {expected:#x}"
                )
            }
            Self::GhcbRescind(outcome) => {
                write!(f, "rescinding the GHCB page's validation: {outcome:?}")
            }
            Self::PageTables(e) => write!(f, "mapping the GHCB: {e}"),
            Self::Metadata(e) => write!(f, "ASEV metadata: {e}"),
            Self::Validate(e) => write!(f, "PVALIDATE: {e}"),
        }
    }
}

impl SnpError {
    /// The reason code of the termination request this error ends in.
    pub fn reason(&self) -> TerminationReason {
        match self {
            Self::Detection(SnpDetectionError::SevWithoutSnp { .. })
            | Self::Protocol(MsrProtocolError::SnpNotSupported) => {
                TerminationReason::SnpUnsupported
            }
            Self::Protocol(MsrProtocolError::UnsupportedVersion { .. }) => {
                TerminationReason::UnsupportedProtocol
            }
            _ => TerminationReason::General,
        }
    }
}

/// An SNP guest whose GHCB is registered, shared and mapped.
pub struct Snp {
    c_bit: u8,
    cpuid: CpuidTable,
}

impl Snp {
    /// Continues from what `boot.s` found: nothing when SEV_STATUS shows no SEV feature;
    /// otherwise confirms SNP and the C-bit, checks the hypervisor supports SNP and the XCR0 the
    /// assembly enabled, and sets up the GHCB (its first page-table split comes from `pool`).
    /// Nothing can be printed before this returns.
    pub fn start(
        sev_status: u64,
        assembly_c_bit: u64,
        pool: &mut TablePool,
    ) -> Result<Option<Self>, SnpError> {
        if sev_status
            & (protocol::SEV_STATUS_SEV
                | protocol::SEV_STATUS_SEV_ES
                | protocol::SEV_STATUS_SEV_SNP)
            == 0
        {
            return Ok(None);
        }
        if sev_status & (protocol::SEV_STATUS_SEV_ES | protocol::SEV_STATUS_SEV_SNP) != 0 {
            SEV_ES_ACTIVE.store(true, Ordering::SeqCst);
        }
        // SAFETY: the CPUID page is launch-validated loader RAM, identity-mapped private by the
        // boot tables and never written by the loader.
        let page = unsafe {
            core::slice::from_raw_parts(layout::SNP_CPUID_PAGE as *const u8, PAGE_SIZE as usize)
        };
        let cpuid = CpuidTable::parse(page).map_err(SnpError::CpuidPage)?;
        let info = ghcb_msr::decode_sev_info(msr_protocol(ghcb_msr::sev_info_request()))
            .map_err(SnpError::Protocol)?;
        let sev_leaf = cpuid
            .lookup(protocol::CPUID_SEV_LEAF, 0, 0, 0)
            .unwrap_or([0; 4]);
        let c_bit = match protocol::detect(sev_status, sev_leaf[1], info.c_bit) {
            Ok(SnpDetection::Snp { c_bit }) => c_bit,
            Ok(SnpDetection::NotSnp) => return Ok(None),
            Err(e) => return Err(SnpError::Detection(e)),
        };
        if u64::from(c_bit) != assembly_c_bit {
            return Err(SnpError::CBitDisagrees {
                assembly: assembly_c_bit,
                rust: c_bit,
            });
        }
        ghcb_msr::decode_hv_features(msr_protocol(ghcb_msr::hv_features_request()))
            .map_err(SnpError::Protocol)?;
        let snp = Self { c_bit, cpuid };
        let expected = cpu_baseline::required_xcr0(|leaf, subleaf| {
            cpu_baseline::boot_cpuid(&snp.cpuid, leaf, subleaf)
        })
        .map_err(SnpError::Baseline)?;
        let enabled = cpu::xcr0();
        if enabled != u64::from(expected) {
            return Err(SnpError::Xcr0 { expected, enabled });
        }
        snp.set_up_ghcb(pool)?;
        Ok(Some(snp))
    }

    /// The C-bit mask for page-table entries of private memory.
    pub fn encryption_mask(&self) -> u64 {
        1 << self.c_bit
    }

    /// Whether 1 GiB pages exist, from the validated CPUID page (never from the host).
    pub fn has_huge_pages(&self) -> bool {
        let edx = self
            .cpuid
            .lookup(0x8000_0001, 0, cpu::xcr0(), 0)
            .map_or(0, |r| r[3]);
        edx & (1 << 26) != 0
    }

    /// Rescinds the GHCB page's launch validation, makes it shared, maps it without the C-bit
    /// (splitting the boot tables' first 2 MiB page), and registers it with the hypervisor.
    fn set_up_ghcb(&self, pool: &mut TablePool) -> Result<(), SnpError> {
        // The page must be rescinded while it is still mapped private (as Linux does).
        match pvalidate(GHCB_PAGE, PageSize::Small, false) {
            AcceptOutcome::Accepted => {}
            other => return Err(SnpError::GhcbRescind(other)),
        }
        let gfn = GHCB_PAGE / PAGE_SIZE;
        let request =
            ghcb_msr::page_state_request(gfn, PageState::Shared).map_err(SnpError::Protocol)?;
        ghcb_msr::check_page_state_response(msr_protocol(request)).map_err(SnpError::Protocol)?;

        let table = pool.allocate_table().map_err(SnpError::PageTables)?;
        let mask = self.encryption_mask();
        *pool.table_mut(table) = paging::split_identity_large_page(
            0,
            paging::PRESENT | paging::WRITABLE | paging::NO_EXECUTE,
            mask,
            core::slice::from_ref(&GHCB_RANGE),
        );
        let first_pd_entry = BOOT_PD0 as *mut u64;
        // SAFETY: the boot PD0 is the live page directory mapping [0, 1 GiB); its entry 0 maps
        // [0, 2 MiB) as one page, and the new table maps the same pages with the same rights
        // (only the GHCB page loses the C-bit), so every live access stays valid. Reloading CR3
        // flushes the old translation.
        unsafe {
            core::ptr::write_volatile(first_pd_entry, table | paging::TABLE_FLAGS | mask);
            cpu::reload_cr3();
        }

        let request = ghcb_msr::register_ghcb_request(gfn).map_err(SnpError::Protocol)?;
        ghcb_msr::check_register_ghcb(msr_protocol(request), gfn).map_err(SnpError::Protocol)?;
        // SAFETY: the GHCB MSR now names the registered, shared GHCB page; every later VMGEXIT
        // (port I/O) uses it.
        unsafe { cpu::wrmsr(protocol::MSR_GHCB, GHCB_PAGE) };
        GHCB_READY.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// PVALIDATEs all e820 RAM outside what the launch validated (the image's ASEV metadata),
    /// 2 MiB at a time with a 4 KiB fall-back, and touches every page once validated. The
    /// identity map of all RAM must be active.
    pub fn validate_ram(
        &self,
        e820: impl Iterator<Item = E820Entry>,
        image_tail: &[u8],
    ) -> Result<AcceptStats, SnpError> {
        let prevalidated: Prevalidated =
            prevalidated::from_image_tail(image_tail).map_err(SnpError::Metadata)?;
        prevalidated::validate_ram(e820, &prevalidated, &mut |address, size| {
            let outcome = pvalidate(address, size, true);
            if outcome == AcceptOutcome::Accepted {
                touch(address, size);
            }
            outcome
        })
        .map_err(SnpError::Validate)
    }
}

/// Reads each 4 KiB page of a freshly validated page once: the first access after validation,
/// made here rather than wherever the page is first used.
fn touch(address: u64, size: PageSize) {
    for page in (address..address + size.bytes()).step_by(acceptance::SMALL as usize) {
        // SAFETY: the page was just validated and is identity-mapped private; reading it has no
        // effect beyond the access itself.
        let _ = unsafe { core::ptr::read_volatile(page as *const u64) };
    }
}

/// PVALIDATE of the page at `address` (identity-mapped) to validated (`true`) or not.
fn pvalidate(address: u64, size: PageSize, validate: bool) -> AcceptOutcome {
    let size_code: u32 = match size {
        PageSize::Small => 0,
        PageSize::Large => 1,
    };
    let status: u64;
    let unchanged: u8;
    // SAFETY: PVALIDATE (F2 0F 01 FF) only changes the RMP validation state of the guest's own
    // page; it runs only under SNP (the caller holds an `Snp`). Validation changes what the
    // page's contents mean, which is why callers touch only pages they own.
    unsafe {
        core::arch::asm!(
            ".byte 0xF2, 0x0F, 0x01, 0xFF",
            "setc {unchanged}",
            inout("rax") address => status,
            in("ecx") size_code,
            in("edx") u32::from(validate),
            unchanged = out(reg_byte) unchanged,
            options(nostack),
        );
    }
    acceptance::pvalidate_outcome(status, unchanged != 0)
}

/// One GHCB MSR protocol exchange: writes `request` to the GHCB MSR, exits, returns the answer.
fn msr_protocol(request: u64) -> u64 {
    // SAFETY: the GHCB MSR protocol is how an SNP guest talks to its hypervisor before (or
    // instead of) a GHCB page; this runs only after SEV_STATUS showed SEV-ES/SNP.
    unsafe {
        cpu::wrmsr(protocol::MSR_GHCB, request);
        vmgexit();
        cpu::rdmsr(protocol::MSR_GHCB)
    }
}

/// VMGEXIT (`rep vmmcall`): hands control to the hypervisor with the GHCB MSR as it is.
///
/// # Safety
/// Only under SEV-ES/SNP, with the GHCB MSR holding a request or the registered GHCB.
unsafe fn vmgexit() {
    // SAFETY: the caller guarantees an SEV-ES/SNP guest; the hypervisor may write the shared
    // GHCB page, which is why this is not `nomem`.
    unsafe { core::arch::asm!(".byte 0xF3, 0x0F, 0x01, 0xD9", options(nostack)) }
}

/// Asks the hypervisor to end the guest, with `reason`; never returns.
pub fn terminate(reason: TerminationReason) -> ! {
    GHCB_READY.store(false, Ordering::SeqCst);
    let _ = msr_protocol(ghcb_msr::termination_request(reason));
    cpu::halt_forever()
}

/// How a port access must be made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PortRoute {
    /// The IN/OUT instruction (no SEV-ES/SNP).
    Direct,
    /// A GHCB IOIO exit.
    Ghcb,
    /// None yet (SEV-ES/SNP before the GHCB is set up, e.g. a panic during detection): the
    /// access would raise #VC with no handler.
    Unavailable,
}

/// How port I/O must be done now.
pub fn port_route() -> PortRoute {
    if GHCB_READY.load(Ordering::Relaxed) {
        PortRoute::Ghcb
    } else if SEV_ES_ACTIVE.load(Ordering::Relaxed) {
        PortRoute::Unavailable
    } else {
        PortRoute::Direct
    }
}

/// The shared GHCB page, accessed only with volatile reads and writes (the host may change it
/// at any time; nothing ever holds a reference into it).
struct SharedGhcbPage;

impl SharedGhcbPage {
    fn at(offset: usize) -> u64 {
        debug_assert!(offset < PAGE_SIZE as usize);
        GHCB_PAGE + offset as u64
    }
}

impl GhcbMemory for SharedGhcbPage {
    fn read_u64(&self, offset: usize) -> u64 {
        // SAFETY: inside the GHCB page, identity-mapped shared; `Ghcb` passes 8-aligned offsets.
        unsafe { core::ptr::read_volatile(Self::at(offset) as *const u64) }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        // SAFETY: as `read_u64`.
        unsafe { core::ptr::write_volatile(Self::at(offset) as *mut u64, value) }
    }

    fn read_u8(&self, offset: usize) -> u8 {
        // SAFETY: inside the GHCB page, identity-mapped shared.
        unsafe { core::ptr::read_volatile(Self::at(offset) as *const u8) }
    }

    fn write_u8(&mut self, offset: usize, value: u8) {
        // SAFETY: as `read_u8`.
        unsafe { core::ptr::write_volatile(Self::at(offset) as *mut u8, value) }
    }
}

/// One port access of `size` bytes (1, 2 or 4) through a GHCB IOIO exit; returns what an IN
/// read (0 for OUT). The value read is the host's, as it would be without SNP: the callers
/// (fw_cfg parsing, the UART status) bound it.
pub fn port_io(port: u16, size: u8, direction: PortDirection, value: u32) -> u32 {
    if port_route() == PortRoute::Unavailable {
        terminate(TerminationReason::General);
    }
    match try_port_io(port, size, direction, value) {
        Ok(read) => read,
        // Nothing can report this (the serial port is what failed): end the guest.
        Err(_) => terminate(TerminationReason::General),
    }
}

fn try_port_io(
    port: u16,
    size: u8,
    direction: PortDirection,
    value: u32,
) -> Result<u32, GhcbError> {
    // The callers are `cpu.rs`'s fixed-size wrappers: 1, 2 or 4 bytes.
    let Some(info) = ghcb::ioio_exit_info(port, size, direction) else {
        terminate(TerminationReason::General)
    };
    let mut exit = Ghcb::new(SharedGhcbPage, GHCB_PAGE);
    exit.prepare_ioio(info, value.into());
    // SAFETY: the GHCB is registered, shared and mapped, and the GHCB MSR names it.
    unsafe { vmgexit() };
    let mask = u64::from(u32::MAX) >> (32 - 8 * u32::from(size));
    match direction {
        PortDirection::In => Ok((exit.ioio_in_result()? & mask) as u32),
        PortDirection::Out => exit.check_status().map(|()| 0),
    }
}
