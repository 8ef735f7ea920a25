//! What the #VE handler does with one virtualization exception: TDG.VP.VEINFO.GET, the
//! classification in `ward_attestation::guest::tdx::ve`, then one TDG.VP.VMCALL that performs
//! the access on the host's side, and the result written back into the interrupted code's
//! registers. The caller advances RIP by the returned length.
//!
//! What the host may answer is limited on purpose:
//! - CPUID: only the hypervisor leaves (0x4000_0000–0x4FFF_FFFF) go to the host. Every other
//!   leaf that reaches the handler (the TDX module answers the architectural ones itself) reads
//!   as zeros — "feature absent" — so the host cannot claim CPU features (as Linux does).
//! - MMIO: only EPT violations on shared GPAs are emulated; a private GPA is fatal.
//! - Port I/O: the size, port and direction come from the exit qualification, never from the
//!   instruction bytes; string and REP forms are refused.
//!
//! Nothing here logs: a log line is port I/O, which would raise a #VE on the same IST stack.

use super::TdCall;
use core::fmt;
use core::ops::RangeInclusive;
use ward_attestation::guest::insn::{self, DecodeError, Instruction, StoreSource};
use ward_attestation::guest::tdx::tdcall::{self, TdcallError, TdcallRegisters, leaf};
use ward_attestation::guest::tdx::tdvmcall::{self, EXPOSED_REGISTERS, TdvmcallError, function};
use ward_attestation::guest::tdx::ve::{self as ve_info, VeAction, VeError};

/// CPUID leaves the host may answer.
pub const HYPERVISOR_LEAVES: RangeInclusive<u32> = 0x4000_0000..=0x4FFF_FFFF;

/// RSP's index in the x86 register encoding.
const RSP: u8 = 4;

/// The general registers of the interrupted code, in the order `ve_entry.s` saves them (RAX at
/// the lowest address). RSP is not here: it is in the CPU's part of the frame, and no
/// emulated instruction may use it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeneralRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl GeneralRegisters {
    /// The register with x86 encoding `index` (0 = RAX … 15 = R15); `None` for RSP.
    fn slot(&mut self, index: u8) -> Option<&mut u64> {
        Some(match index {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return None,
        })
    }
}

/// A #VE the handler must not or cannot emulate: the TD stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VeFault {
    /// TDG.VP.VEINFO.GET failed.
    Info(TdcallError),
    /// The exit reason or its qualification is refused (private EPT violation, string I/O, …).
    Refused(VeError),
    /// The instruction at RIP of an MMIO access does not decode.
    Decode(DecodeError),
    /// An EPT violation on an instruction that is not an emulated load or store.
    NotMmio(Instruction),
    /// The MMIO instruction reads or writes RSP.
    StackPointerOperand,
    /// The TDVMCALL could not be built (size, alignment) for the request named.
    Request(&'static str, TdvmcallError),
    /// The host refused or failed the request named.
    Host(&'static str, TdvmcallError),
}

impl fmt::Display for VeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Info(e) => write!(f, "TDG.VP.VEINFO.GET: {e}"),
            Self::Refused(e) => write!(f, "{e}"),
            Self::Decode(e) => write!(f, "MMIO instruction: {e}"),
            Self::NotMmio(i) => write!(f, "EPT violation on a non-MMIO instruction {i:?}"),
            Self::StackPointerOperand => f.write_str("MMIO instruction uses RSP"),
            Self::Request(what, e) => write!(f, "{what}: {e}"),
            Self::Host(what, e) => write!(f, "{what}: host answered {e}"),
        }
    }
}

/// What the handler needs to know about the interrupted code besides its registers.
#[derive(Clone, Copy, Debug)]
pub struct Interrupted<'a> {
    /// RFLAGS.IF was set (HLT tells the host whether an interrupt can wake the vCPU).
    pub interrupts_enabled: bool,
    /// The bytes at RIP (at most 15, never past the end of kernel text): decoded for MMIO only.
    pub code: &'a [u8],
}

fn vmcall(
    td: &mut impl TdCall,
    mut registers: TdcallRegisters,
    what: &'static str,
) -> Result<TdcallRegisters, VeFault> {
    td.call(&mut registers);
    tdvmcall::check(&registers).map_err(|e| VeFault::Host(what, e))?;
    Ok(registers)
}

/// Handles the pending #VE; returns how many bytes RIP must advance.
pub fn handle(
    td: &mut impl TdCall,
    registers: &mut GeneralRegisters,
    interrupted: Interrupted<'_>,
    shared_mask: u64,
) -> Result<u64, VeFault> {
    let mut request = tdcall::ve_info_get();
    td.call(&mut request);
    let info = ve_info::decode(&request).map_err(VeFault::Info)?;
    let action = ve_info::classify(&info, shared_mask).map_err(VeFault::Refused)?;
    let length = u64::from(info.instruction_length);
    match action {
        VeAction::Cpuid => cpuid(td, registers)?,
        VeAction::Hlt => hlt(td, interrupted.interrupts_enabled)?,
        VeAction::Rdmsr => {
            let out = vmcall(td, tdvmcall::rdmsr(registers.rcx as u32), "RDMSR")?;
            let value = out.r11;
            registers.rax = value & 0xFFFF_FFFF;
            registers.rdx = value >> 32;
        }
        VeAction::Wrmsr => {
            let value = (registers.rdx << 32) | (registers.rax & 0xFFFF_FFFF);
            vmcall(td, tdvmcall::wrmsr(registers.rcx as u32, value), "WRMSR")?;
        }
        VeAction::Io { port, size, is_in } => port_io(td, registers, port, size, is_in)?,
        // The module gives no instruction length for EPT violations: the decoder's counts.
        VeAction::Mmio { gpa } => return mmio(td, registers, interrupted.code, gpa),
    }
    Ok(length)
}

fn cpuid(td: &mut impl TdCall, registers: &mut GeneralRegisters) -> Result<(), VeFault> {
    let (leaf, subleaf) = (registers.rax as u32, registers.rcx as u32);
    let values = if HYPERVISOR_LEAVES.contains(&leaf) {
        let out = vmcall(td, tdvmcall::cpuid(leaf, subleaf), "CPUID")?;
        tdvmcall::cpuid_result(&out).map_err(|e| VeFault::Host("CPUID", e))?
    } else {
        [0; 4]
    };
    // CPUID writes EAX–EDX, clearing the upper halves.
    registers.rax = values[0].into();
    registers.rbx = values[1].into();
    registers.rcx = values[2].into();
    registers.rdx = values[3].into();
    Ok(())
}

/// TDG.VP.VMCALL<Instruction.HLT>; R12 says whether interrupts are blocked.
fn hlt(td: &mut impl TdCall, interrupts_enabled: bool) -> Result<(), VeFault> {
    let request = TdcallRegisters {
        rax: leaf::VP_VMCALL,
        rcx: EXPOSED_REGISTERS,
        r10: 0,
        r11: function::HLT,
        r12: u64::from(!interrupts_enabled),
        ..Default::default()
    };
    vmcall(td, request, "HLT").map(|_| ())
}

fn port_io(
    td: &mut impl TdCall,
    registers: &mut GeneralRegisters,
    port: u16,
    size: u8,
    is_in: bool,
) -> Result<(), VeFault> {
    let write = (!is_in).then_some(registers.rax as u32);
    let request = tdvmcall::io(port, size, write).map_err(|e| VeFault::Request("port I/O", e))?;
    let out = vmcall(td, request, "port I/O")?;
    if is_in {
        let value = tdvmcall::io_in_result(&out, size).map_err(|e| VeFault::Host("IN", e))?;
        // IN EAX zero-extends into RAX; IN AL and IN AX keep the other bits.
        registers.rax = insn::load_result(
            registers.rax,
            value.into(),
            size,
            insn::Gpr {
                index: 0,
                high_byte: false,
            },
            insn::Extension::None,
        );
    }
    Ok(())
}

fn mmio(
    td: &mut impl TdCall,
    registers: &mut GeneralRegisters,
    code: &[u8],
    gpa: u64,
) -> Result<u64, VeFault> {
    let decoded = insn::decode(code).map_err(VeFault::Decode)?;
    match decoded.instruction {
        Instruction::MmioLoad {
            size,
            dest,
            extension,
        } => {
            let request =
                tdvmcall::mmio(gpa, size, None).map_err(|e| VeFault::Request("MMIO read", e))?;
            let out = vmcall(td, request, "MMIO read")?;
            let value =
                tdvmcall::mmio_read_result(&out, size).map_err(|e| VeFault::Host("MMIO", e))?;
            let slot = registers
                .slot(dest.index)
                .ok_or(VeFault::StackPointerOperand)?;
            *slot = insn::load_result(*slot, value, size, dest, extension);
        }
        Instruction::MmioStore { size, source } => {
            let value = match source {
                StoreSource::Immediate(value) => value,
                StoreSource::Register(register) if register.index == RSP => {
                    return Err(VeFault::StackPointerOperand);
                }
                StoreSource::Register(register) => {
                    let current = registers
                        .slot(register.index)
                        .map(|slot| *slot)
                        .ok_or(VeFault::StackPointerOperand)?;
                    insn::store_value(current, size, register)
                }
            };
            let request = tdvmcall::mmio(gpa, size, Some(value))
                .map_err(|e| VeFault::Request("MMIO write", e))?;
            vmcall(td, request, "MMIO write")?;
        }
        other => return Err(VeFault::NotMmio(other)),
    }
    Ok(decoded.len as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const SHARED: u64 = 1 << 51;

    /// A TDX module with one pending #VE, and a host that answers TDVMCALLs from a script.
    struct Simulated {
        veinfo: TdcallRegisters,
        host: fn(&TdcallRegisters) -> TdcallRegisters,
        calls: Vec<TdcallRegisters>,
    }

    impl TdCall for Simulated {
        fn call(&mut self, registers: &mut TdcallRegisters) {
            self.calls.push(*registers);
            *registers = match registers.rax {
                leaf::VP_VEINFO_GET => self.veinfo,
                leaf::VP_VMCALL => (self.host)(registers),
                _ => TdcallRegisters {
                    rax: 0xC000_0100_0000_0000,
                    ..Default::default()
                },
            };
        }
    }

    fn veinfo(exit_reason: u64, qualification: u64, gpa: u64, length: u64) -> TdcallRegisters {
        TdcallRegisters {
            rcx: exit_reason,
            rdx: qualification,
            r9: gpa,
            r10: length,
            ..Default::default()
        }
    }

    fn td(veinfo: TdcallRegisters, host: fn(&TdcallRegisters) -> TdcallRegisters) -> Simulated {
        Simulated {
            veinfo,
            host,
            calls: Vec::new(),
        }
    }

    fn run(
        td: &mut Simulated,
        registers: &mut GeneralRegisters,
        code: &[u8],
    ) -> Result<u64, VeFault> {
        let interrupted = Interrupted {
            interrupts_enabled: false,
            code,
        };
        handle(td, registers, interrupted, SHARED)
    }

    fn echo_r11(value: u64) -> TdcallRegisters {
        TdcallRegisters {
            r11: value,
            ..Default::default()
        }
    }

    #[test]
    fn registers_are_laid_out_as_the_entry_stub_pushes_them() {
        // ve_entry.s pushes R15 first and RAX last: RAX at the lowest address.
        let order = [
            core::mem::offset_of!(GeneralRegisters, rax),
            core::mem::offset_of!(GeneralRegisters, rbx),
            core::mem::offset_of!(GeneralRegisters, rcx),
            core::mem::offset_of!(GeneralRegisters, rdx),
            core::mem::offset_of!(GeneralRegisters, rsi),
            core::mem::offset_of!(GeneralRegisters, rdi),
            core::mem::offset_of!(GeneralRegisters, rbp),
            core::mem::offset_of!(GeneralRegisters, r8),
            core::mem::offset_of!(GeneralRegisters, r15),
        ];
        assert_eq!(order, [0, 8, 16, 24, 32, 40, 48, 56, 112]);
        assert_eq!(size_of::<GeneralRegisters>(), 15 * 8);
        // The x86 encoding's register numbers reach the right fields.
        let mut registers = GeneralRegisters::default();
        for index in (0..16).filter(|&i| i != RSP) {
            *registers.slot(index).unwrap() = u64::from(index) + 100;
        }
        assert!(registers.slot(RSP).is_none());
        assert_eq!(
            (registers.rcx, registers.rbx, registers.rdi, registers.r11),
            (101, 103, 107, 111)
        );
    }

    #[test]
    fn out_to_the_serial_port_goes_to_the_host() {
        // OUT DX, AL to 0x3F8 (qualification: size 1, out, port in bits 31:16).
        let mut out = td(veinfo(30, 0x03F8_0000, 0, 1), |_| echo_r11(0));
        let mut registers = GeneralRegisters {
            rax: 0xDEAD_BE41,
            ..Default::default()
        };
        assert_eq!(run(&mut out, &mut registers, &[0xEE]), Ok(1));
        let request = out.calls[1];
        assert_eq!(
            (
                request.r11,
                request.r12,
                request.r13,
                request.r14,
                request.r15
            ),
            (function::IO, 1, 1, 0x3F8, 0x41)
        );
        assert_eq!(request.rcx, EXPOSED_REGISTERS);
        assert_eq!(registers.rax, 0xDEAD_BE41, "OUT leaves RAX alone");
    }

    #[test]
    fn in_merges_or_zero_extends_like_the_cpu() {
        let mut registers = GeneralRegisters {
            rax: 0xFFFF_FFFF_FFFF_FFFF,
            ..Default::default()
        };
        // IN AL, DX from 0x3FD.
        let mut byte = td(veinfo(30, 0x03FD_0008, 0, 1), |_| echo_r11(0x1234_5620));
        assert_eq!(run(&mut byte, &mut registers, &[0xEC]), Ok(1));
        assert_eq!(registers.rax, 0xFFFF_FFFF_FFFF_FF20);
        // IN EAX, DX (size 4 = qualification 3) clears the upper half.
        let mut dword = td(veinfo(30, 0x0CFC_000B, 0, 1), |_| {
            echo_r11(0xAAAA_1234_5678)
        });
        assert_eq!(run(&mut dword, &mut registers, &[0xED]), Ok(1));
        assert_eq!(registers.rax, 0x1234_5678);
    }

    #[test]
    fn cpuid_only_asks_the_host_for_hypervisor_leaves() {
        let host = |_: &TdcallRegisters| TdcallRegisters {
            r12: 0x4000_0001,
            r13: u64::from(u32::from_le_bytes(*b"KVMK")),
            r14: 0x1_0000_0002,
            r15: 3,
            ..Default::default()
        };
        let mut registers = GeneralRegisters {
            rax: 0x4000_0000,
            rcx: 0,
            rbx: u64::MAX,
            rdx: u64::MAX,
            ..Default::default()
        };
        let mut hypervisor = td(veinfo(10, 0, 0, 2), host);
        assert_eq!(run(&mut hypervisor, &mut registers, &[0x0F, 0xA2]), Ok(2));
        assert_eq!(hypervisor.calls[1].r11, function::CPUID);
        assert_eq!(hypervisor.calls[1].r12, 0x4000_0000);
        assert_eq!(
            (registers.rax, registers.rcx, registers.rdx),
            (0x4000_0001, 2, 3)
        );
        // A feature leaf the TDX module left to the host: zeros, and no TDVMCALL at all.
        let mut feature = td(veinfo(10, 0, 0, 2), host);
        registers.rax = 0x8000_0008;
        registers.rbx = 7;
        assert_eq!(run(&mut feature, &mut registers, &[0x0F, 0xA2]), Ok(2));
        assert_eq!(feature.calls.len(), 1, "only VEINFO.GET");
        assert_eq!(
            (registers.rax, registers.rbx, registers.rcx, registers.rdx),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn msrs_split_and_join_edx_eax() {
        let mut registers = GeneralRegisters {
            rcx: 0x1B,
            rax: 0xFFFF_FFFF_0000_0000,
            ..Default::default()
        };
        let mut read = td(veinfo(31, 0, 0, 2), |r| {
            assert_eq!(r.r12, 0x1B);
            echo_r11(0x1122_3344_5566_7788)
        });
        assert_eq!(run(&mut read, &mut registers, &[0x0F, 0x32]), Ok(2));
        assert_eq!((registers.rax, registers.rdx), (0x5566_7788, 0x1122_3344));
        registers.rax = 0xFFFF_FFFF_AAAA_BBBB;
        registers.rdx = 0x0000_0000_CCCC_DDDD;
        let mut write = td(veinfo(32, 0, 0, 2), |_| echo_r11(0));
        assert_eq!(run(&mut write, &mut registers, &[0x0F, 0x30]), Ok(2));
        assert_eq!(write.calls[1].r11, function::WRMSR);
        assert_eq!(write.calls[1].r13, 0xCCCC_DDDD_AAAA_BBBB);
    }

    #[test]
    fn hlt_says_whether_interrupts_can_wake_the_cpu() {
        let mut blocked = td(veinfo(12, 0, 0, 1), |_| echo_r11(0));
        let mut registers = GeneralRegisters::default();
        assert_eq!(run(&mut blocked, &mut registers, &[0xF4]), Ok(1));
        assert_eq!((blocked.calls[1].r11, blocked.calls[1].r12), (12, 1));
        let mut open = td(veinfo(12, 0, 0, 1), |_| echo_r11(0));
        let interrupted = Interrupted {
            interrupts_enabled: true,
            code: &[0xF4],
        };
        assert_eq!(
            handle(&mut open, &mut registers, interrupted, SHARED),
            Ok(1)
        );
        assert_eq!(open.calls[1].r12, 0);
    }

    #[test]
    fn mmio_loads_and_stores_use_the_decoder_and_the_shared_gpa() {
        let gpa = SHARED | 0xFE00_1004;
        // mov eax, [rdi+4] (8B 47 04): the length comes from the decoder (VEINFO has none).
        let mut load = td(veinfo(48, 0, gpa, 0), |r| {
            assert_eq!((r.r12, r.r13), (4, 0), "4-byte read");
            echo_r11(0xFFFF_FFFF_8765_4321)
        });
        let mut registers = GeneralRegisters {
            rax: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            run(&mut load, &mut registers, &[0x8B, 0x47, 0x04, 0x90]),
            Ok(3)
        );
        assert_eq!(load.calls[1].r14, gpa);
        assert_eq!(registers.rax, 0x8765_4321);
        // movzx r9d, word [rsi] (44 0F B7 0E).
        let mut movzx = td(veinfo(48, 0, SHARED | 0xFE00_2000, 0), |_| echo_r11(0xBEEF));
        registers.r9 = u64::MAX;
        assert_eq!(
            run(&mut movzx, &mut registers, &[0x44, 0x0F, 0xB7, 0x0E]),
            Ok(4)
        );
        assert_eq!(registers.r9, 0xBEEF);
        // mov [rdi], bh (88 3F): stores the high byte of RBX.
        let mut store = td(veinfo(48, 0, SHARED | 0xFE00_3001, 0), |_| echo_r11(0));
        registers.rbx = 0x1234_AB77;
        assert_eq!(run(&mut store, &mut registers, &[0x88, 0x3F]), Ok(2));
        let write = store.calls[1];
        assert_eq!((write.r12, write.r13, write.r15), (1, 1, 0xAB));
        // mov dword [rax], 0x80 (C7 00 80 00 00 00).
        let mut immediate = td(veinfo(48, 0, SHARED | 0xFE00_3004, 0), |_| echo_r11(0));
        assert_eq!(
            run(&mut immediate, &mut registers, &[0xC7, 0x00, 0x80, 0, 0, 0]),
            Ok(6)
        );
        assert_eq!(immediate.calls[1].r15, 0x80);
    }

    #[test]
    fn refusals_stop_the_td() {
        let ok = |_: &TdcallRegisters| echo_r11(0);
        let mut registers = GeneralRegisters::default();
        // An EPT violation on private memory is never emulated.
        let mut private = td(veinfo(48, 0, 0x10_0000, 0), ok);
        assert_eq!(
            run(&mut private, &mut registers, &[0x8B, 0x07]),
            Err(VeFault::Refused(VeError::PrivateEptViolation {
                gpa: 0x10_0000
            }))
        );
        assert_eq!(private.calls.len(), 1, "nothing reaches the host");
        // REP OUTSB (string I/O).
        let mut string = td(veinfo(30, 0x03F8_0030, 0, 2), ok);
        assert_eq!(
            run(&mut string, &mut registers, &[0xF3, 0x6E]),
            Err(VeFault::Refused(VeError::StringIo))
        );
        // An exit reason without a handler (WBINVD = 54).
        let mut unknown = td(veinfo(54, 0, 0, 2), ok);
        assert_eq!(
            run(&mut unknown, &mut registers, &[0x0F, 0x09]),
            Err(VeFault::Refused(VeError::Unhandled(54)))
        );
        // An EPT violation whose instruction is not a load or store.
        let mut cpuid = td(veinfo(48, 0, SHARED | 0xFE00_0000, 0), ok);
        assert_eq!(
            run(&mut cpuid, &mut registers, &[0x0F, 0xA2]),
            Err(VeFault::NotMmio(Instruction::Cpuid))
        );
        // Truncated instruction bytes.
        let mut truncated = td(veinfo(48, 0, SHARED | 0xFE00_0000, 0), ok);
        assert_eq!(
            run(&mut truncated, &mut registers, &[0x8B]),
            Err(VeFault::Decode(DecodeError::Truncated))
        );
        // mov rsp, [rax] and mov [rax], rsp.
        let mut load_rsp = td(veinfo(48, 0, SHARED | 0xFE00_0000, 0), ok);
        assert_eq!(
            run(&mut load_rsp, &mut registers, &[0x48, 0x8B, 0x20]),
            Err(VeFault::StackPointerOperand)
        );
        let mut store_rsp = td(veinfo(48, 0, SHARED | 0xFE00_0000, 0), ok);
        assert_eq!(
            run(&mut store_rsp, &mut registers, &[0x48, 0x89, 0x20]),
            Err(VeFault::StackPointerOperand)
        );
        // VEINFO.GET itself failing.
        let mut failing = td(
            TdcallRegisters {
                rax: 0x8000_0000_0000_0000,
                ..Default::default()
            },
            ok,
        );
        assert!(matches!(
            run(&mut failing, &mut registers, &[0x90]),
            Err(VeFault::Info(_))
        ));
    }

    #[test]
    fn host_failures_are_fatal_and_leave_registers_alone() {
        let refuse = |_: &TdcallRegisters| TdcallRegisters {
            r10: 0x8000_0000_0000_0000,
            r11: 0x55,
            ..Default::default()
        };
        let mut registers = GeneralRegisters {
            rax: 0x77,
            ..Default::default()
        };
        let mut port = td(veinfo(30, 0x0060_0008, 0, 1), refuse);
        assert_eq!(
            run(&mut port, &mut registers, &[0xEC]),
            Err(VeFault::Host(
                "port I/O",
                TdvmcallError::Status(0x8000_0000_0000_0000)
            ))
        );
        assert_eq!(registers.rax, 0x77);
        // An unaligned MMIO access is refused before the host sees it.
        let mut unaligned = td(veinfo(48, 0, SHARED | 0xFE00_0002, 0), refuse);
        assert!(matches!(
            run(&mut unaligned, &mut registers, &[0x8B, 0x07]),
            Err(VeFault::Request("MMIO read", _))
        ));
        assert_eq!(unaligned.calls.len(), 1);
    }
}
