//! The SNP [`Platform`] on the machine.

use super::ghcb_slot;
use super::guest_request::{self, MessagePages};
use super::page_state;
use super::{CPUID_TABLE, SnpError, cpu, parse_launch};
use crate::arch::cpu_features::CpuFeatures;
use crate::arch::random;
use crate::mm::address::{PAGE_SIZE, PhysRange};
use crate::mm::shared_pool::{SharedBuffer, SharedPool};
use crate::platform::{Evidence, Platform, PlatformError, check_pages};
use alloc::boxed::Box;
use log::error;
use spin::{Mutex, Once};
use ward_attestation::guest::binding::{self, BindingError};
use ward_attestation::guest::provider::{GuestRequestTransport, SnpEvidence, TransportError};
use ward_attestation::guest::snp::ghcb_msr;
use ward_attestation::guest::snp::guest_message::MESSAGE_PAGE_SIZE;
use ward_attestation::guest::snp::secrets::SECRETS_PAGE_SIZE;
use ward_attestation::guest::snp::{SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SEV_SNP};
use ward_attestation::protocol::{self, EvidenceKind};
use ward_bootinfo::{BootInfo, PlatformKind};
use zeroize::{Zeroize, Zeroizing};

/// The request and response pages of SNP_GUEST_REQUEST, in the shared pool.
struct SharedMessagePages(SharedBuffer<'static>);

// SAFETY: the buffer's pages belong to this value alone and are reached only by copying in and
// out (`SharedBuffer::copy_in`/`copy_out`), never through references; which CPU does the
// copying does not matter.
unsafe impl Send for SharedMessagePages {}

impl MessagePages for SharedMessagePages {
    fn request_gpa(&self) -> u64 {
        self.0.phys().as_u64()
    }

    fn response_gpa(&self) -> u64 {
        self.0.phys().as_u64() + MESSAGE_PAGE_SIZE as u64
    }

    fn put_request(&mut self, request: &[u8; MESSAGE_PAGE_SIZE]) {
        // Both copies are within the two pages the buffer holds.
        let _ = self.0.copy_in(0, request);
        let _ = self.0.copy_in(MESSAGE_PAGE_SIZE, &[0; MESSAGE_PAGE_SIZE]);
    }

    fn take_response(&self, response: &mut [u8; MESSAGE_PAGE_SIZE]) {
        let _ = self.0.copy_out(MESSAGE_PAGE_SIZE, response);
    }
}

/// SNP_GUEST_REQUEST through the boot CPU's GHCB.
struct GhcbTransport {
    pages: SharedMessagePages,
}

impl GuestRequestTransport for GhcbTransport {
    fn exchange(
        &mut self,
        request: &[u8; MESSAGE_PAGE_SIZE],
        response: &mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<(), TransportError> {
        let pages = &mut self.pages;
        ghcb_slot::with(|ghcb, exit| {
            guest_request::exchange(
                ghcb,
                pages,
                request,
                response,
                |_| exit(),
                || {
                    for _ in 0..100_000 {
                        core::hint::spin_loop();
                    }
                },
            )
        })
        .map_err(|e| TransportError(alloc::format!("{e}")))?
    }
}

/// The SEV-SNP platform.
pub struct Snp {
    c_bit_mask: u64,
    /// VMPCK0 until the evidence channel takes it.
    vmpck0: Mutex<Option<Zeroizing<[u8; 32]>>>,
    evidence: Once<Mutex<SnpEvidence<GhcbTransport>>>,
    features: Once<CpuFeatures>,
}

static INSTANCE: Once<Snp> = Once::new();

fn page_copy(address: u64, which: &'static str) -> Result<Box<[u8; 4096]>, SnpError> {
    if address == 0 || !address.is_multiple_of(PAGE_SIZE) {
        return Err(SnpError::MissingPage(which));
    }
    let mut copy = Box::new([0u8; 4096]);
    // SAFETY: the loader validated all RAM and identity-maps it (private, C-bit set) in the
    // tables still active; the page is one the ASEV metadata reserves for this purpose.
    unsafe { core::ptr::copy_nonoverlapping(address as *const u8, copy.as_mut_ptr(), 4096) };
    Ok(copy)
}

impl Snp {
    /// Step 1 of the module documentation. Runs on the loader's tables with the heap up and
    /// before any instruction that raises #VC.
    pub fn init(info: &BootInfo) -> Result<&'static Snp, SnpError> {
        let sev_status = cpu::sev_status();
        let required = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SEV_SNP;
        if sev_status & required != required {
            return Err(SnpError::NotActive { sev_status });
        }
        let platform = info.platform_info;
        let cpuid_page = page_copy(platform.cpuid_page, "CPUID")?;
        let mut secrets_page = page_copy(platform.secrets_page, "secrets")?;
        // The original goes first, whatever the checks below decide: no copy of the VMPCKs
        // stays where the loader's memory may later be reused.
        // SAFETY: same page as read by `page_copy`; private, identity-mapped, used by no one.
        unsafe { core::ptr::write_bytes(platform.secrets_page as *mut u8, 0, SECRETS_PAGE_SIZE) };
        let launch = parse_launch(platform.encryption_mask, &cpuid_page[..], &secrets_page);
        secrets_page.zeroize();
        let launch = launch?;
        CPUID_TABLE.call_once(|| launch.cpuid);
        Ok(INSTANCE.call_once(|| Snp {
            c_bit_mask: launch.c_bit_mask,
            vmpck0: Mutex::new(Some(launch.vmpck0)),
            evidence: Once::new(),
            features: Once::new(),
        }))
    }

    /// The platform after [`Self::init`].
    pub fn get() -> Option<&'static Snp> {
        INSTANCE.get()
    }

    /// Step 3: the GHCB and the guest-request pages from the shared pool (mapped without the
    /// C-bit and already shared), GHCB registration, the evidence channel with VMPCK0.
    pub fn enable_ghcb(&self, pool: &'static SharedPool) -> Result<(), SnpError> {
        let features = cpu::msr_protocol(ghcb_msr::hv_features_request());
        ghcb_msr::decode_hv_features(features).map_err(SnpError::Hypervisor)?;
        let ghcb = pool.allocate(1).map_err(|_| SnpError::PoolExhausted)?;
        let messages = pool
            .allocate(2 * MESSAGE_PAGE_SIZE / PAGE_SIZE as usize)
            .map_err(|_| SnpError::PoolExhausted)?;
        let (page, gpa) = (ghcb.as_ptr(), ghcb.phys().as_u64());
        // The GHCB is never given back to the pool.
        core::mem::forget(ghcb);
        // SAFETY: a pool page: shared, mapped without the C-bit in the shared window, and now
        // owned by the GHCB slot alone for the rest of the run.
        unsafe { ghcb_slot::install(page, gpa) }.map_err(SnpError::Hypervisor)?;
        if let Some(mut key) = self.vmpck0.lock().take() {
            let channel = SnpEvidence::new(
                *key,
                GhcbTransport {
                    pages: SharedMessagePages(messages),
                },
            );
            key.zeroize();
            self.evidence.call_once(|| Mutex::new(channel));
        }
        Ok(())
    }

    /// A report over `report_data`, checked by the evidence channel to carry it at VMPL0.
    fn report(&self, report_data: &[u8; 64]) -> Result<alloc::vec::Vec<u8>, SnpError> {
        let channel = self.evidence.get().ok_or(SnpError::NoGhcb)?;
        channel.lock().report(report_data).map_err(|e| {
            error!("SNP report: {e}");
            SnpError::Evidence
        })
    }

    /// DESIGN §4: the deployment configuration must be the one whose SHA-256 the host fixed as
    /// HOST_DATA at launch, as the enclave's own report says.
    pub fn check_config_binding(&self, config: &[u8]) -> Result<(), ConfigBindingError> {
        let report = self
            .report(&[0; 64])
            .map_err(ConfigBindingError::Platform)?;
        binding::check_snp(&report, config).map_err(ConfigBindingError::Binding)
    }
}

/// Why the configuration could not be checked against the launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigBindingError {
    /// No report.
    Platform(SnpError),
    /// The report refuses the configuration (or does not parse).
    Binding(BindingError),
}

impl core::fmt::Display for ConfigBindingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Platform(e) => write!(f, "no SNP report to check the configuration: {e}"),
            Self::Binding(e) => write!(f, "{e}"),
        }
    }
}

impl Platform for Snp {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Snp
    }

    fn name(&self) -> &'static str {
        "snp"
    }

    fn private_pte_mask(&self) -> u64 {
        self.c_bit_mask
    }

    fn shared_pte_mask(&self) -> u64 {
        0
    }

    /// `range` must be identity-mapped (all RAM but the shared pool is, and the pool is shared
    /// before the kernel's tables exist).
    fn share(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)?;
        page_state::make_shared(&mut cpu::Hardware, range.start.as_u64(), range.end.as_u64())
            .map_err(|e| PlatformError::Snp(SnpError::PageState(e)))
    }

    fn unshare(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)?;
        page_state::make_private(&mut cpu::Hardware, range.start.as_u64(), range.end.as_u64())
            .map_err(|e| PlatformError::Snp(SnpError::PageState(e)))
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, PlatformError> {
        let bytes = self.report(report_data).map_err(PlatformError::Snp)?;
        Ok(Evidence::Platform(protocol::Evidence {
            kind: EvidenceKind::SevSnp,
            bytes,
        }))
    }

    /// RDSEED/RDRAND: the CPU's own generator, which the hypervisor cannot influence under SNP.
    fn random_seed(&self) -> Result<[u8; 32], PlatformError> {
        // CPUID raises #VC, answered from the validated CPUID page: only after the handler.
        let features = self.features.call_once(CpuFeatures::detect);
        random::seed(features).map_err(PlatformError::Random)
    }
}
