//! The #VE vector: the entry stub (`ve_entry.s`) and the handler it calls, which runs
//! [`super::ve::handle`] against the TDX module and advances RIP, or stops the TD.
//!
//! The handler runs on the virtualization IST stack and must not raise a #VE itself until it
//! returns (a nested one would start again at the top of the same stack): it never logs and
//! reports a fatal #VE through [`DirectConsole`] and [`stop`].

use super::XSAVE_AREA_BYTES;
use super::hardware::{DirectConsole, TdxModule, stop};
use super::ve::{self, GeneralRegisters, Interrupted, VeFault};
use crate::exit::ExitCode;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use ward_attestation::guest::insn::MAX_INSTRUCTION_LEN;

core::arch::global_asm!(
    include_str!("ve_entry.s"),
    handler = sym ve_handler,
    xsave_bytes = const XSAVE_AREA_BYTES,
);

unsafe extern "sysv64" {
    fn ward_ve_entry();
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
}

/// The TD's shared bit; zero until the TDX platform is set up (then the #VE gate is installed).
static SHARED_MASK: AtomicU64 = AtomicU64::new(0);

/// Arms the #VE handler with the TD's shared bit.
pub(super) fn arm(shared_mask: u64) {
    SHARED_MASK.store(shared_mask, Ordering::Release);
}

/// The #VE entry for the IDT, once the TDX platform is set up; `None` elsewhere (vector 20
/// then keeps the reporting stub).
pub fn ve_entry_address() -> Option<u64> {
    (SHARED_MASK.load(Ordering::Acquire) != 0).then_some(ward_ve_entry as *const () as u64)
}

/// The frame `ve_entry.s` builds.
#[repr(C)]
struct VeFrame {
    registers: GeneralRegisters,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const RFLAGS_IF: u64 = 1 << 9;

/// Up to 15 bytes at `rip`, only from kernel text (which is mapped read-execute and never
/// changes); empty for any other address.
fn code_at(rip: u64) -> &'static [u8] {
    // SAFETY: only the addresses of the linker's text bounds are taken.
    let (start, end) = unsafe {
        (
            core::ptr::from_ref(&__text_start) as u64,
            core::ptr::from_ref(&__text_end) as u64,
        )
    };
    if rip < start || rip >= end {
        return &[];
    }
    let len = (end - rip).min(MAX_INSTRUCTION_LEN as u64) as usize;
    // SAFETY: `[rip, rip + len)` lies inside the kernel's text segment, mapped readable for
    // the kernel's lifetime and never written.
    unsafe { core::slice::from_raw_parts(rip as *const u8, len) }
}

extern "sysv64" fn ve_handler(frame: &mut VeFrame) {
    let interrupted = Interrupted {
        interrupts_enabled: frame.rflags & RFLAGS_IF != 0,
        code: code_at(frame.rip),
    };
    let shared_mask = SHARED_MASK.load(Ordering::Relaxed);
    match ve::handle(
        &mut TdxModule,
        &mut frame.registers,
        interrupted,
        shared_mask,
    ) {
        Ok(length) => frame.rip += length,
        Err(fault) => fatal(&fault, frame.rip),
    }
}

fn fatal(fault: &VeFault, rip: u64) -> ! {
    let _ = writeln!(
        DirectConsole,
        "\n!!! CPU EXCEPTION: vector 20 (#VE virtualization exception) not emulated: {fault}\n    rip {rip:#018x}"
    );
    stop(ExitCode::Exception)
}
