//! #VE (virtualization exception) information from TDG.VP.VEINFO.GET and what the handler must
//! emulate for it (TDX Module ABI "TDG.VP.VEINFO.GET", Intel SDM exit qualifications).

use super::tdcall::{TdcallError, TdcallRegisters, check_status};
use core::fmt;

/// Exit reasons (basic exit reason numbers) that raise #VE in a TD and Ward handles.
pub mod exit_reason {
    pub const CPUID: u32 = 10;
    pub const HLT: u32 = 12;
    pub const IO: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const EPT_VIOLATION: u32 = 48;
}

/// The #VE information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VeInfo {
    pub exit_reason: u32,
    pub exit_qualification: u64,
    pub gla: u64,
    pub gpa: u64,
    pub instruction_length: u32,
    pub instruction_info: u32,
}

/// Decodes TDG.VP.VEINFO.GET's outputs.
pub fn decode(out: &TdcallRegisters) -> Result<VeInfo, TdcallError> {
    check_status(out.rax)?;
    Ok(VeInfo {
        exit_reason: out.rcx as u32,
        exit_qualification: out.rdx,
        gla: out.r8,
        gpa: out.r9,
        instruction_length: out.r10 as u32,
        instruction_info: (out.r10 >> 32) as u32,
    })
}

/// What the #VE handler has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VeAction {
    Cpuid,
    Hlt,
    Rdmsr,
    Wrmsr,
    /// Port I/O of `size` bytes (the port comes from the exit qualification, whichever form).
    Io {
        port: u16,
        size: u8,
        is_in: bool,
    },
    /// MMIO at the shared GPA: decode the instruction (see [`crate::guest::insn`]).
    Mmio {
        gpa: u64,
    },
}

/// A #VE Ward cannot or must not handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VeError {
    /// String or REP port I/O.
    StringIo,
    /// An EPT violation on a private GPA: the host took away an accepted page or touched
    /// unaccepted memory. Never emulated: that would let the host feed private reads.
    PrivateEptViolation { gpa: u64 },
    /// An exit reason with no handler.
    Unhandled(u32),
    /// Instruction length the CPU reported outside 1..=15.
    BadInstructionLength(u32),
}

impl fmt::Display for VeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StringIo => f.write_str("string/REP port I/O in a #VE"),
            Self::PrivateEptViolation { gpa } => {
                write!(f, "#VE EPT violation on private GPA {gpa:#x}")
            }
            Self::Unhandled(r) => write!(f, "#VE for unhandled exit reason {r}"),
            Self::BadInstructionLength(l) => write!(f, "#VE instruction length {l}"),
        }
    }
}

/// Classifies a #VE. `shared_mask` is the TD's shared bit.
pub fn classify(ve: &VeInfo, shared_mask: u64) -> Result<VeAction, VeError> {
    let needs_length = ve.exit_reason != exit_reason::EPT_VIOLATION;
    if needs_length && !(1..=15).contains(&ve.instruction_length) {
        return Err(VeError::BadInstructionLength(ve.instruction_length));
    }
    Ok(match ve.exit_reason {
        exit_reason::CPUID => VeAction::Cpuid,
        exit_reason::HLT => VeAction::Hlt,
        exit_reason::RDMSR => VeAction::Rdmsr,
        exit_reason::WRMSR => VeAction::Wrmsr,
        exit_reason::IO => {
            let q = ve.exit_qualification;
            if q & (0b11 << 4) != 0 {
                return Err(VeError::StringIo);
            }
            let size = match q & 7 {
                0 => 1,
                1 => 2,
                3 => 4,
                _ => return Err(VeError::Unhandled(exit_reason::IO)),
            };
            VeAction::Io {
                port: (q >> 16) as u16,
                size,
                is_in: q & (1 << 3) != 0,
            }
        }
        exit_reason::EPT_VIOLATION => {
            if ve.gpa & shared_mask == 0 {
                return Err(VeError::PrivateEptViolation { gpa: ve.gpa });
            }
            VeAction::Mmio { gpa: ve.gpa }
        }
        other => return Err(VeError::Unhandled(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ve(exit_reason: u32, q: u64, gpa: u64, len: u32) -> VeInfo {
        VeInfo {
            exit_reason,
            exit_qualification: q,
            gla: 0,
            gpa,
            instruction_length: len,
            instruction_info: 0,
        }
    }

    #[test]
    fn decodes_veinfo_registers() {
        let out = TdcallRegisters {
            rcx: 30,
            rdx: 0x3F8_0000,
            r8: 1,
            r9: 2,
            r10: (5 << 32) | 1,
            ..Default::default()
        };
        assert_eq!(
            decode(&out).unwrap(),
            VeInfo {
                exit_reason: 30,
                exit_qualification: 0x3F8_0000,
                gla: 1,
                gpa: 2,
                instruction_length: 1,
                instruction_info: 5,
            }
        );
    }

    #[test]
    fn io_qualification() {
        // OUT DX, AL to 0x3F8: size 1 (0), out, DX operand.
        assert_eq!(
            classify(&ve(30, 0x03F8_0000, 0, 1), 0),
            Ok(VeAction::Io {
                port: 0x3F8,
                size: 1,
                is_in: false
            })
        );
        // IN EAX, 0x60: size 4 (3), in (bit 3), immediate (bit 6).
        assert_eq!(
            classify(&ve(30, 0x0060_0000 | 0x40 | 0x8 | 3, 0, 2), 0),
            Ok(VeAction::Io {
                port: 0x60,
                size: 4,
                is_in: true
            })
        );
        assert_eq!(
            classify(&ve(30, 0x0060_0010, 0, 1), 0),
            Err(VeError::StringIo)
        );
        assert_eq!(
            classify(&ve(30, 0x0060_0020, 0, 2), 0),
            Err(VeError::StringIo)
        );
    }

    #[test]
    fn mmio_only_on_shared_gpas() {
        let shared = 1 << 51;
        assert_eq!(
            classify(&ve(48, 0, shared | 0xFEB0_0000, 0), shared),
            Ok(VeAction::Mmio {
                gpa: shared | 0xFEB0_0000
            })
        );
        assert_eq!(
            classify(&ve(48, 0, 0x10_0000, 0), shared),
            Err(VeError::PrivateEptViolation { gpa: 0x10_0000 })
        );
        assert_eq!(classify(&ve(10, 0, 0, 2), shared), Ok(VeAction::Cpuid));
        assert_eq!(
            classify(&ve(10, 0, 0, 0), shared),
            Err(VeError::BadInstructionLength(0))
        );
        assert_eq!(
            classify(&ve(52, 0, 0, 2), shared),
            Err(VeError::Unhandled(52))
        );
    }
}
