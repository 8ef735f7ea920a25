//! The boot CPU's GHCB: one shared page registered with the hypervisor through the GHCB MSR
//! protocol, used by the #VC handler and by SNP_GUEST_REQUEST. Ward runs on the boot CPU alone
//! under SNP (application processors are not started), so one page serves; each AP would need
//! its own, registered by that AP.
//!
//! A #VC raised while the GHCB is being filled for another exit would overwrite it, so the
//! page is taken with a busy flag: code holding it must not do port I/O, MMIO or CPUID, and a
//! #VC that finds it busy is a kernel bug and fatal.

use super::cpu;
use super::ghcb_page::SharedGhcb;
use super::vc::VcError;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;
use ward_attestation::guest::snp::ghcb::Ghcb;
use ward_attestation::guest::snp::ghcb_msr::{self, MsrProtocolError};

struct Slot {
    page: NonNull<u8>,
    gpa: u64,
    busy: AtomicBool,
}

// SAFETY: the page is reached only through raw pointers by whoever holds the busy flag.
unsafe impl Sync for Slot {}
// SAFETY: as above.
unsafe impl Send for Slot {}

static SLOT: Once<Slot> = Once::new();

/// Registers the shared page at `page` (physical `gpa`, C-bit clear) as this CPU's GHCB.
///
/// # Safety
/// `page` must be a whole page, mapped without the C-bit, shared with the hypervisor
/// (page-state changed), and used for nothing else for the rest of the run.
pub unsafe fn install(page: NonNull<u8>, gpa: u64) -> Result<(), MsrProtocolError> {
    let gfn = gpa >> 12;
    let answer = cpu::msr_protocol(ghcb_msr::register_ghcb_request(gfn)?);
    ghcb_msr::check_register_ghcb(answer, gfn)?;
    cpu::set_ghcb_msr(gpa);
    SLOT.call_once(|| Slot {
        page,
        gpa,
        busy: AtomicBool::new(false),
    });
    Ok(())
}

fn exit_through(gpa: u64) {
    cpu::set_ghcb_msr(gpa);
    cpu::vmgexit();
}

/// Runs `f` with the GHCB and the function that makes the exit.
pub fn with<R>(f: impl FnOnce(&mut Ghcb<SharedGhcb>, &dyn Fn()) -> R) -> Result<R, VcError> {
    let slot = SLOT.get().ok_or(VcError::NoGhcb)?;
    if slot.busy.swap(true, Ordering::Acquire) {
        return Err(VcError::GhcbBusy);
    }
    // SAFETY: `install`'s caller guaranteed the page; the busy flag makes this the only user.
    let memory = unsafe { SharedGhcb::new(slot.page) };
    let mut ghcb = Ghcb::new(memory, slot.gpa);
    let gpa = slot.gpa;
    let result = f(&mut ghcb, &|| exit_through(gpa));
    slot.busy.store(false, Ordering::Release);
    Ok(result)
}

/// [`with`] ignoring the busy flag: only for the last words before termination, when the
/// interrupted user of the page will never resume.
pub fn with_forced<R>(f: impl FnOnce(&mut Ghcb<SharedGhcb>, &dyn Fn()) -> R) -> Option<R> {
    let slot = SLOT.get()?;
    // SAFETY: as in `with`; the interrupted holder (if any) never runs again.
    let memory = unsafe { SharedGhcb::new(slot.page) };
    let mut ghcb = Ghcb::new(memory, slot.gpa);
    let gpa = slot.gpa;
    Some(f(&mut ghcb, &|| exit_through(gpa)))
}
