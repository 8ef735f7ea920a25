//! The TDCALL instruction, and what the #VE path needs to report a fatal error without raising
//! another #VE: serial output and the stop, made directly as TDG.VP.VMCALLs.

use super::TdCall;
use crate::exit::{DEBUG_EXIT_PORT, ExitCode};
use core::fmt;
use ward_attestation::guest::tdx::tdcall::{TdcallRegisters, leaf};
use ward_attestation::guest::tdx::tdvmcall::{self, EXPOSED_REGISTERS};

core::arch::global_asm!(include_str!("tdcall.s"));

unsafe extern "sysv64" {
    fn ward_kernel_tdcall(registers: *mut TdcallRegisters);
}

/// GHCI TDG.VP.VMCALL<ReportFatalError>.
const REPORT_FATAL_ERROR: u64 = 0x10003;
/// COM1's data register.
const COM1: u16 = 0x3f8;

/// The TDX module, reached with TDCALL. Only constructed once CPUID leaf 0x21 named it.
pub struct TdxModule;

impl TdCall for TdxModule {
    fn call(&mut self, registers: &mut TdcallRegisters) {
        // SAFETY: TDCALL exists in a TD (the platform checked CPUID leaf 0x21 before making
        // this); the stub reads and writes only the structure it is given and preserves the
        // callee-saved registers. Leaves that write memory (TDG.MR.REPORT, the host through a
        // shared buffer) are given identity-mapped buffers their callers own.
        unsafe { ward_kernel_tdcall(registers) }
    }
}

/// Port output through TDG.VP.VMCALL<Instruction.IO>; a refusal is ignored (the fatal path has
/// no better place to report it).
fn out(port: u16, size: u8, value: u32) {
    if let Ok(mut registers) = tdvmcall::io(port, size, Some(value)) {
        TdxModule.call(&mut registers);
    }
}

/// COM1 without port instructions: for messages from inside the #VE handler.
pub struct DirectConsole;

impl fmt::Write for DirectConsole {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                out(COM1, 1, b'\r'.into());
            }
            out(COM1, 1, byte.into());
        }
        Ok(())
    }
}

/// Stops the TD from inside the #VE handler: `isa-debug-exit` (QEMU) through a TDVMCALL, then
/// ReportFatalError, then spinning (HLT would raise a #VE).
pub fn stop(code: ExitCode) -> ! {
    out(DEBUG_EXIT_PORT, 4, code as u32);
    let mut registers = TdcallRegisters {
        rax: leaf::VP_VMCALL,
        rcx: EXPOSED_REGISTERS,
        r10: 0,
        r11: REPORT_FATAL_ERROR,
        r12: code as u64,
        ..Default::default()
    };
    TdxModule.call(&mut registers);
    loop {
        core::hint::spin_loop();
    }
}
