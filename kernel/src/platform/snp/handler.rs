//! The #VC handler on the machine: reads the trapping instruction, lets [`vc`](super::vc)
//! decide, answers CPUID from the validated CPUID page and everything else through the GHCB,
//! and resumes. A failure is reported on the serial port through the GHCB directly (a port
//! write here would raise #VC on the stack in use) and ends the guest.

use super::ghcb_slot;
use super::vc::{self, Answer, Plan, Request, VcError, VcFrame};
use crate::drivers::pci::ecam::{Q35_ECAM_BASE, Q35_ECAM_SIZE};
use crate::exit::{DEBUG_EXIT_PORT, ExitCode};
use core::arch::{asm, global_asm};
use core::fmt::Write;
use ward_attestation::guest::insn::MAX_INSTRUCTION_LEN;
use ward_attestation::guest::snp::ghcb::{self, Field, Ghcb, GhcbError, PortDirection};
use ward_attestation::guest::snp::ghcb_msr::TerminationReason;

global_asm!(include_str!("vc.s"), handler = sym ward_vc_handler);

const _: () = assert!(
    vc::MMIO_WINDOWS[0].0 == Q35_ECAM_BASE
        && vc::MMIO_WINDOWS[0].1 == Q35_ECAM_BASE + Q35_ECAM_SIZE,
    "the #VC MMIO window must be the ECAM the kernel maps"
);

unsafe extern "C" {
    fn ward_vc_entry();
    static __text_start: u8;
    static __text_end: u8;
}

/// The address the IDT's vector 29 gate points at.
pub fn entry_address() -> u64 {
    ward_vc_entry as *const () as u64
}

/// The bytes at `rip`, which must lie in the kernel's text (read-only, private).
fn instruction_bytes(rip: u64) -> Result<&'static [u8], VcError> {
    // SAFETY: the linker symbols bound the kernel's text; only their addresses are used.
    let (start, end) = unsafe {
        (
            core::ptr::from_ref(&__text_start) as u64,
            core::ptr::from_ref(&__text_end) as u64,
        )
    };
    if rip < start || rip >= end {
        return Err(VcError::OutsideKernelText(rip));
    }
    let len = (end - rip).min(MAX_INSTRUCTION_LEN as u64) as usize;
    // SAFETY: `[rip, rip + len)` lies inside the kernel text, mapped read-only and never
    // written, so a shared reference to it is sound.
    Ok(unsafe { core::slice::from_raw_parts(rip as *const u8, len) })
}

fn xcr0() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the loader enabled CR4.OSXSAVE (the kernel's baseline); XGETBV 0 reads XCR0 and
    // is never intercepted.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (u64::from(high) << 32) | u64::from(low)
}

fn cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 has no side effect (and is not intercepted under SEV-ES/SNP).
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

fn through_ghcb(
    ghcb: &mut Ghcb<super::ghcb_page::SharedGhcb>,
    exit: &dyn Fn(),
    request: Request,
) -> Result<Answer, GhcbError> {
    match request {
        Request::PortIn { port, size } => {
            let info = ghcb::ioio_exit_info(port, size, PortDirection::In)
                .ok_or(GhcbError::BadMmioSize(size.into()))?;
            ghcb.prepare_ioio(info, 0);
            exit();
            ghcb.ioio_in_result().map(Answer::Value)
        }
        Request::PortOut { port, size, value } => {
            let info = ghcb::ioio_exit_info(port, size, PortDirection::Out)
                .ok_or(GhcbError::BadMmioSize(size.into()))?;
            ghcb.prepare_ioio(info, value);
            exit();
            ghcb.check_status().map(|()| Answer::None)
        }
        Request::ReadMsr { msr } => {
            ghcb.prepare_msr(msr, None);
            exit();
            ghcb.rdmsr_result().map(Answer::Value)
        }
        Request::WriteMsr { msr, value } => {
            ghcb.prepare_msr(msr, Some(value));
            exit();
            ghcb.check_status().map(|()| Answer::None)
        }
        Request::MmioRead { address, size, .. } => {
            ghcb.prepare_mmio_read(address, size.into())?;
            exit();
            ghcb.mmio_read_result(size.into()).map(Answer::Value)
        }
        Request::MmioWrite {
            address,
            size,
            value,
        } => {
            ghcb.prepare_mmio_write(address, size.into(), value)?;
            exit();
            ghcb.check_status().map(|()| Answer::None)
        }
        Request::ReadTsc { with_aux } => {
            ghcb.begin();
            let code = if with_aux {
                vc::exit::RDTSCP
            } else {
                vc::exit::RDTSC
            };
            ghcb.set(Field::SW_EXIT_CODE, code);
            ghcb.set(Field::SW_EXIT_INFO_1, 0);
            ghcb.set(Field::SW_EXIT_INFO_2, 0);
            exit();
            ghcb.check_status()?;
            let low = ghcb.get(Field::RAX)? & 0xFFFF_FFFF;
            let high = ghcb.get(Field::RDX)? & 0xFFFF_FFFF;
            let aux = if with_aux {
                Some(ghcb.get(Field::RCX)? as u32)
            } else {
                None
            };
            Ok(Answer::Tsc {
                tsc: (high << 32) | low,
                aux,
            })
        }
        Request::Cpuid { .. } => Ok(Answer::None),
    }
}

fn answer(plan: &Plan) -> Result<Answer, VcError> {
    if let Request::Cpuid { leaf, subleaf } = plan.request {
        let table = super::cpuid_table().ok_or(VcError::NoCpuidTable)?;
        return Ok(Answer::Cpuid(vc::cpuid_answer(
            table,
            leaf,
            subleaf,
            xcr0(),
            cr4(),
        )));
    }
    ghcb_slot::with(|ghcb, exit| through_ghcb(ghcb, exit, plan.request))?.map_err(VcError::Ghcb)
}

fn handle(frame: &mut VcFrame) -> Result<(), VcError> {
    let bytes = instruction_bytes(frame.rip)?;
    let plan = vc::plan(frame.error_code, bytes, frame, &vc::MMIO_WINDOWS)?;
    let answer = answer(&plan)?;
    vc::complete(&plan, answer, frame);
    Ok(())
}

extern "sysv64" fn ward_vc_handler(frame: *mut VcFrame) {
    // SAFETY: `vc.s` passes the frame it just built on this IST stack; nothing else refers
    // to it until the handler returns.
    let frame = unsafe { &mut *frame };
    if let Err(error) = handle(frame) {
        fatal(frame, error)
    }
}

/// Serial output straight through the GHCB (COM1 data register).
struct GhcbSerial;

const COM1: u16 = 0x3f8;

fn port_out(port: u16, size: u8, value: u64) {
    ghcb_slot::with_forced(|ghcb, exit| {
        if let Some(info) = ghcb::ioio_exit_info(port, size, PortDirection::Out) {
            ghcb.prepare_ioio(info, value);
            exit();
        }
    });
}

impl Write for GhcbSerial {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                port_out(COM1, 1, u64::from(b'\r'));
            }
            port_out(COM1, 1, u64::from(byte));
        }
        Ok(())
    }
}

fn fatal(frame: &VcFrame, error: VcError) -> ! {
    let _ = writeln!(
        GhcbSerial,
        "\n!!! #VC (VMM communication) not handled: {error}\n    exit code {:#x}  rip {:#018x}  rsp {:#018x}",
        frame.error_code, frame.rip, frame.rsp
    );
    port_out(DEBUG_EXIT_PORT, 4, ExitCode::Exception as u64);
    super::cpu::terminate(TerminationReason::General)
}
