//! The TDX [`Platform`]: set-up checks at boot, page conversion, quotes and the model's RTMR.

use super::convert;
use super::entry;
use super::hardware::TdxModule;
use super::quote::{self, QuoteError, STATUS_OFFSET, SharedQuoteBuffer, WaitBounds};
use super::setup::{self, ConfigBinding};
use super::{TdCall, TdxError};
use crate::arch::cpu_features::CpuFeatures;
use crate::arch::{random, tsc};
use crate::mm::address::{PAGE_SIZE, PhysRange};
use crate::mm::shared_pool::SharedBuffer;
use crate::platform::{Evidence, Platform, PlatformError, check_pages};
use crate::report::Hex;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::ToString;
use core::arch::x86_64::__cpuid_count;
use log::{info, warn};
use spin::Mutex;
use ward_attestation::guest::provider::{TdxEvidence, TdxTransport, TransportError};
use ward_attestation::guest::tdx::getquote::TDREPORT_LEN;
use ward_attestation::guest::tdx::rtmr::MODEL_RTMR;
use ward_attestation::guest::tdx::tdcall::{self, TdcallError};
use ward_attestation::guest::tdx::{CPUID_TDX_LEAF, is_tdx_signature};
use ward_attestation::protocol;
use ward_bootinfo::{PlatformInfo, PlatformKind};

/// Size of the GetQuote buffer: a quote with its PCK certificate chain takes 5–8 KiB.
const QUOTE_BUFFER_BYTES: usize = 16 << 10;
/// How long the host's quoting service may take: about half a minute by the TSC, and a poll
/// count that ends the wait within minutes even if the TSC frequency is unknown.
const QUOTE_WAIT: WaitBounds = WaitBounds {
    timeout_micros: 30_000_000,
    max_polls: 1_000_000,
};
/// Spin-loop hints between two polls of the GetQuote status.
const PAUSES_PER_POLL: u32 = 1000;
/// Lower-half addresses: the kernel's identity map, where a buffer's address is its GPA.
const IDENTITY_LIMIT: u64 = 1 << 47;

/// TDG.MR.REPORT's output buffer.
#[repr(C, align(1024))]
struct ReportBuffer([u8; TDREPORT_LEN]);

/// REPORTDATA in, or an RTMR extension's data.
#[repr(C, align(64))]
struct Block64([u8; 64]);

/// The GPA of a heap object (heap memory is identity-mapped private RAM).
fn gpa_of<T>(object: &mut T) -> Result<u64, TdcallError> {
    let address = core::ptr::from_mut(object) as u64;
    if address >= IDENTITY_LIMIT {
        return Err(TdcallError::BadArgument("buffer outside the identity map"));
    }
    Ok(address)
}

/// TDG.MR.REPORT over `report_data`.
fn tdreport(report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], TdcallError> {
    let mut data = Box::new(Block64(*report_data));
    let mut report = Box::new(ReportBuffer([0; TDREPORT_LEN]));
    let mut registers = tdcall::mr_report(gpa_of(&mut *report)?, gpa_of(&mut *data)?)?;
    TdxModule.call(&mut registers);
    tdcall::check_status(registers.rax)?;
    Ok(report.0)
}

/// The hardware steps of `TdxEvidence`: TDG.MR.REPORT, and GetQuote through the shared pool.
struct QuoteTransport {
    shared_mask: u64,
}

impl TdxTransport for QuoteTransport {
    fn tdreport(&mut self, report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], TransportError> {
        tdreport(report_data).map_err(|e| TransportError(format!("TDG.MR.REPORT: {e}")))
    }

    fn get_quote(&mut self, buffer: &mut [u8]) -> Result<(), TransportError> {
        let failed = |e: &dyn core::fmt::Display| TransportError(format!("GetQuote: {e}"));
        let pool = crate::boot::SHARED_POOL
            .get()
            .ok_or_else(|| TransportError("no shared pool".to_string()))?;
        let pages = pool
            .allocate(buffer.len().div_ceil(PAGE_SIZE as usize))
            .map_err(|e| failed(&e))?;
        let mut shared = PoolQuoteBuffer {
            pages,
            shared_mask: self.shared_mask,
        };
        let pause = || {
            for _ in 0..PAUSES_PER_POLL {
                core::hint::spin_loop();
            }
        };
        let result = quote::exchange(
            &mut TdxModule,
            &mut shared,
            buffer,
            tsc::micros_since_start,
            pause,
            QUOTE_WAIT,
        );
        if let Err(QuoteError::TimedOut { .. }) = result {
            // The host may still write into these pages later: they never go back to the pool.
            core::mem::forget(shared);
        }
        result.map_err(|e| failed(&e))
    }
}

/// The GetQuote buffer in pages of the shared pool.
struct PoolQuoteBuffer<'pool> {
    pages: SharedBuffer<'pool>,
    shared_mask: u64,
}

impl SharedQuoteBuffer for PoolQuoteBuffer<'_> {
    fn shared_gpa(&self) -> u64 {
        self.pages.phys().as_u64() | self.shared_mask
    }

    fn size_bytes(&self) -> usize {
        self.pages.len()
    }

    fn copy_in(&mut self, bytes: &[u8]) -> Result<(), QuoteError> {
        self.pages.copy_in(0, bytes).map_err(|_| QuoteError::Buffer)
    }

    fn copy_out(&self, bytes: &mut [u8]) -> Result<(), QuoteError> {
        self.pages
            .copy_out(0, bytes)
            .map_err(|_| QuoteError::Buffer)
    }

    fn status(&self) -> u64 {
        let field = self.pages.as_ptr().as_ptr().wrapping_add(STATUS_OFFSET) as *const u64;
        // SAFETY: the status field lies inside these mapped shared pages and is 8-byte aligned
        // (the buffer is page aligned); the read is volatile because the host changes it, and
        // no reference to the shared memory is made.
        unsafe { core::ptr::read_volatile(field) }
    }
}

/// Intel TDX.
pub struct Tdx {
    shared_mask: u64,
    features: CpuFeatures,
    evidence: Mutex<TdxEvidence<QuoteTransport>>,
}

impl Tdx {
    /// Checks that this is a TD whose shared bit is the loader's, that the #VE entry can save
    /// the enabled extended state, and that `config` hashes to MRCONFIGID; then arms the #VE
    /// handler (installed by the IDT).
    pub fn new(
        platform_info: &PlatformInfo,
        config: Option<&[u8]>,
        features: CpuFeatures,
    ) -> Result<Self, TdxError> {
        let signature = __cpuid_count(CPUID_TDX_LEAF, 0);
        if !is_tdx_signature(signature.ebx, signature.ecx, signature.edx) {
            return Err(TdxError::NotATrustDomain);
        }
        let mut registers = tdcall::vp_info();
        TdxModule.call(&mut registers);
        let td = setup::check_vp_info(&registers, platform_info.encryption_mask)?;
        let shared_mask = td.shared_mask();
        setup::check_xsave_size(__cpuid_count(0xD, 0).ebx)?;
        if td.debug() {
            warn!(
                "TDX: this is a debug TD: the host can read its memory; verifiers refuse its quotes"
            );
        }
        let report = tdreport(&[0; 64]).map_err(TdxError::Report)?;
        let binding = setup::check_config(&report, config)?;
        if binding == ConfigBinding::Absent {
            warn!("TDX: no deployment configuration, so MRCONFIGID is not checked");
        }
        entry::arm(shared_mask);
        info!(
            "TDX: trust domain, GPA width {} (shared bit {shared_mask:#x}), {} of {} vCPUs, configuration {}",
            td.gpa_width,
            td.num_vcpus,
            td.max_vcpus,
            match binding {
                ConfigBinding::Bound => "bound to MRCONFIGID",
                ConfigBinding::Absent => "absent",
            }
        );
        Ok(Self {
            shared_mask,
            features,
            evidence: Mutex::new(TdxEvidence::new(
                QuoteTransport { shared_mask },
                QUOTE_BUFFER_BYTES,
            )),
        })
    }
}

fn tdx_error(error: TdxError) -> PlatformError {
    PlatformError::Tdx(error)
}

impl Platform for Tdx {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Tdx
    }

    fn name(&self) -> &'static str {
        "tdx"
    }

    fn private_pte_mask(&self) -> u64 {
        0
    }

    fn shared_pte_mask(&self) -> u64 {
        self.shared_mask
    }

    fn share(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)?;
        convert::to_shared(
            &mut TdxModule,
            range.start.as_u64(),
            range.len(),
            self.shared_mask,
        )
        .map_err(|e| tdx_error(TdxError::Convert(e)))
    }

    fn unshare(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)?;
        convert::to_private(
            &mut TdxModule,
            range.start.as_u64(),
            range.len(),
            self.shared_mask,
        )
        .map_err(|e| tdx_error(TdxError::Convert(e)))
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, PlatformError> {
        let bytes = self
            .evidence
            .lock()
            .quote(report_data)
            .map_err(|e| tdx_error(TdxError::Evidence(e)))?;
        Ok(Evidence::Platform(protocol::Evidence {
            kind: protocol::EvidenceKind::Tdx,
            bytes,
        }))
    }

    fn random_seed(&self) -> Result<[u8; 32], PlatformError> {
        random::seed(&self.features).map_err(PlatformError::Random)
    }

    fn record_model(&self, sha384: &[u8; 48]) -> Result<(), PlatformError> {
        let mut block = Box::new(Block64([0; 64]));
        block.0[..48].copy_from_slice(sha384);
        let extend = |block: &mut Block64| {
            let mut registers = tdcall::rtmr_extend(gpa_of(block)?, MODEL_RTMR)?;
            TdxModule.call(&mut registers);
            tdcall::check_status(registers.rax)
        };
        extend(&mut block).map_err(|e| tdx_error(TdxError::Extend(e)))?;
        info!(
            "TDX: RTMR{MODEL_RTMR} extended with the model's SHA-384 {}",
            Hex(sha384)
        );
        Ok(())
    }
}
