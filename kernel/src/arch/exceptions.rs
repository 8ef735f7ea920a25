//! What happens on a CPU exception: a report on the serial console (vector, error code, RIP,
//! CR2, and the stack whose guard page was hit, if any), then a failure exit. Nothing is
//! resumed: an unexpected exception in an enclave is a bug or an attack.

use super::paging::layout::Stack;
use super::registers::cr2;
use crate::exit::{ExitCode, exit};
use crate::mm::address::VirtAddr;
use crate::serial::EmergencyWriter;
use core::arch::global_asm;
use core::fmt::Write;

global_asm!(include_str!("exceptions.s"), handler = sym ward_exception_handler);

unsafe extern "C" {
    static ward_exception_stubs: [u64; 32];
}

/// The stub addresses, indexed by vector.
pub fn stub_addresses() -> [u64; 32] {
    // SAFETY: `ward_exception_stubs` is a read-only table of 32 quads in exceptions.s.
    unsafe { ward_exception_stubs }
}

/// The frame the common stub builds: saved registers, then vector and error code, then what
/// the CPU pushed.
#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Mnemonic and name of an exception vector.
pub fn describe(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved vector"),
    }
}

/// " of CPU n" for application processors, nothing for the boot CPU.
struct CpuSuffix(usize);

impl core::fmt::Display for CpuSuffix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            cpu => write!(f, " of CPU {cpu}"),
        }
    }
}

extern "sysv64" fn ward_exception_handler(frame: *const ExceptionFrame) -> ! {
    // SAFETY: the common stub passes a pointer to the frame it just built on this stack.
    let frame = unsafe { &*frame };
    let fault_address = cr2();
    let handler_stack =
        Stack::locate_on_any_cpu(VirtAddr::new(core::ptr::from_ref(&frame.vector) as u64))
            .filter(|&(_, _, mapped)| mapped);
    let (mnemonic, name) = describe(frame.vector);
    let mut out = EmergencyWriter;
    let _ = writeln!(
        out,
        "\n!!! CPU EXCEPTION: vector {} ({mnemonic} {name})",
        frame.vector
    );
    let _ = writeln!(
        out,
        "    error code {:#x}  rip {:#018x}  cs {:#x}  rflags {:#x}",
        frame.error_code, frame.rip, frame.cs, frame.rflags
    );
    let _ = writeln!(
        out,
        "    rsp {:#018x}  ss {:#x}  cr2 {:#018x}",
        frame.rsp, frame.ss, fault_address
    );
    let _ = writeln!(
        out,
        "    rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    );
    let _ = writeln!(
        out,
        "    r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}",
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    );
    match handler_stack {
        Some((cpu, stack, _)) => {
            let _ = writeln!(
                out,
                "    handled on the {} stack{}",
                stack.name(),
                CpuSuffix(cpu)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "    handled on the loader's (before the kernel's tables) stack"
            );
        }
    }
    if frame.vector == 14 {
        let code = frame.error_code;
        let _ = writeln!(
            out,
            "    page fault: {} {} {}",
            if code & 1 != 0 {
                "protection violation"
            } else {
                "page not present"
            },
            if code & 0x10 != 0 {
                "on instruction fetch"
            } else if code & 2 != 0 {
                "on write"
            } else {
                "on read"
            },
            if code & 0x8 != 0 {
                "(reserved bit set)"
            } else {
                ""
            }
        );
        if let Some((cpu, stack, false)) = Stack::locate_on_any_cpu(VirtAddr::new(fault_address)) {
            let _ = writeln!(
                out,
                "    cr2 is in the guard page below the {} stack{} [{:#x}..{:#x})",
                stack.name(),
                CpuSuffix(cpu),
                stack.bottom_on(cpu).as_u64(),
                stack.top_on(cpu).as_u64()
            );
        }
    }
    exit(ExitCode::Exception)
}
