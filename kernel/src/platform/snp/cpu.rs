//! The SEV-SNP instructions and MSRs: VMGEXIT, the GHCB MSR protocol, PVALIDATE, SEV_STATUS,
//! and guest termination. None of them raises #VC, so all are usable before the #VC handler
//! and the GHCB exist.

use super::page_state::{PageOps, PageSize, PvalidateError};
use crate::arch::registers::{rdmsr, wrmsr};
use core::arch::asm;
use ward_attestation::guest::snp::ghcb_msr::{
    self, MsrProtocolError, PageState, TerminationReason,
};
use ward_attestation::guest::snp::{MSR_GHCB, MSR_SEV_STATUS};

/// VMGEXIT (`rep vmmcall`): hands control to the hypervisor, which reads the GHCB MSR.
pub fn vmgexit() {
    // SAFETY: VMGEXIT only transfers to the hypervisor; guest memory it may touch is the
    // shared GHCB and shared pages, which Rust never references.
    unsafe {
        asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xd9",
            options(nostack, preserves_flags)
        )
    };
}

/// One GHCB MSR protocol request: its value goes into the GHCB MSR, the hypervisor's answer
/// comes back in it. The GHCB MSR's previous value (the GHCB page's address, once
/// registered) is restored afterwards.
pub fn msr_protocol(request: u64) -> u64 {
    // SAFETY: the GHCB MSR exists under SEV-ES/SNP (the kernel runs here only when the loader
    // and SEV_STATUS say SNP is active); its accesses never trap.
    unsafe {
        let saved = rdmsr(MSR_GHCB);
        wrmsr(MSR_GHCB, request);
        vmgexit();
        let answer = rdmsr(MSR_GHCB);
        wrmsr(MSR_GHCB, saved);
        answer
    }
}

/// Points the GHCB MSR at the GHCB page (before every GHCB-based exit).
pub fn set_ghcb_msr(gpa: u64) {
    // SAFETY: as in `msr_protocol`.
    unsafe { wrmsr(MSR_GHCB, gpa) };
}

/// The SEV_STATUS MSR (read-only, set at launch).
pub fn sev_status() -> u64 {
    // SAFETY: SEV_STATUS exists on every SEV-capable CPU; the caller runs only when the loader
    // reported SNP. It is not intercepted.
    unsafe { rdmsr(MSR_SEV_STATUS) }
}

/// Asks the hypervisor to end the guest; halts if it does not.
pub fn terminate(reason: TerminationReason) -> ! {
    msr_protocol(ghcb_msr::termination_request(reason));
    loop {
        // SAFETY: parks the CPU for good.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// PVALIDATE of the page at linear address `address` (which must map it).
pub fn pvalidate(address: u64, size: PageSize, validate: bool) -> Result<(), PvalidateError> {
    let result: u64;
    let carry: u8;
    // SAFETY: PVALIDATE changes only the RMP's validated bit of the page; callers hold the page
    // (nothing else uses it during the conversion). Encoding F2 0F 01 FF.
    unsafe {
        asm!(
            ".byte 0xf2, 0x0f, 0x01, 0xff",
            "setc {carry}",
            inout("rax") address => result,
            in("rcx") size as u64,
            in("rdx") u64::from(validate),
            carry = out(reg_byte) carry,
            options(nostack)
        )
    };
    PvalidateError::check(result as u32, carry != 0)
}

/// The page-conversion steps on this CPU: PVALIDATE through the identity map, page-state
/// changes through the GHCB MSR protocol.
pub struct Hardware;

impl PageOps for Hardware {
    fn pvalidate(
        &mut self,
        address: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        pvalidate(address, size, validate)
    }

    fn change_state(&mut self, gfn: u64, state: PageState) -> Result<(), MsrProtocolError> {
        let request = ghcb_msr::page_state_request(gfn, state)?;
        ghcb_msr::check_page_state_response(msr_protocol(request))
    }
}
