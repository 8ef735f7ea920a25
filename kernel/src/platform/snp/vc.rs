//! The #VC (VMM communication, vector 29) decisions: what the interrupted instruction asked the
//! hypervisor for, and how its answer lands in the interrupted registers.
//!
//! Under SEV-SNP the CPU raises #VC instead of exiting to the hypervisor for the instructions
//! the hypervisor intercepts; the error code is the exit code, and everything else must be
//! read from the instruction itself (`ward_attestation::guest::insn` decodes it, [`operand`]
//! computes an MMIO address). The handler (`handler.rs`) emulates:
//!
//! - CPUID (0x72): answered from the validated CPUID page, never from the hypervisor; a leaf
//!   the page lacks reads as zeros;
//! - IOIO (0x7B): IN/OUT of 1, 2 or 4 bytes through the GHCB (serial, PCI config, fw_cfg,
//!   isa-debug-exit);
//! - MSR (0x7C): RDMSR/WRMSR through the GHCB;
//! - NPF (0x400): an MMIO MOV inside the kernel's MMIO windows (PCI ECAM, the high MMIO window
//!   with the virtio BARs and the local APIC) through the GHCB;
//! - RDTSC (0x6E) and RDTSCP (0x87), should the hypervisor intercept them (KVM does not): the
//!   hypervisor's value, which Ward uses for logs and cadence only, never for security.
//!
//! Anything else — another exit code, an instruction that does not match the exit, string I/O,
//! an MMIO address outside the windows — is fatal: the handler reports it and terminates.
//!
//! [`operand`]: super::operand

use super::operand::{self, OperandError};
use crate::arch::paging::layout::HIGH_MMIO;
use core::fmt;
use ward_attestation::guest::insn::{
    self, DecodeError, Extension, Gpr, Instruction, Port, StoreSource,
};
use ward_attestation::guest::snp::cpuid_page::CpuidTable;
use ward_attestation::guest::snp::ghcb::GhcbError;

/// #VC error codes (SVM exit codes) the handler emulates.
pub mod exit {
    pub const CPUID: u64 = 0x72;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    /// Nested page fault: MMIO (the hypervisor marks MMIO pages so that access raises #VC).
    pub const NPF: u64 = 0x400;
    pub const RDTSC: u64 = 0x6E;
    pub const RDTSCP: u64 = 0x87;
}

/// RDTSC and RDTSCP: not in `insn`, whose decoder covers what the TDX #VE handler needs too.
const RDTSC_BYTES: [u8; 2] = [0x0F, 0x31];
const RDTSCP_BYTES: [u8; 3] = [0x0F, 0x01, 0xF9];

/// The kernel's MMIO mappings (`arch::paging::kernel_space`), `[start, end)`: the only places
/// an MMIO #VC may come from. Both are identity-mapped, so a linear address in them is its GPA.
/// The first is q35's ECAM (`drivers::pci::ecam`, bare metal only: `handler.rs` checks the two
/// agree at compile time).
pub const MMIO_WINDOWS: [(u64, u64); 2] = [
    (0xB000_0000, 0xC000_0000),
    (HIGH_MMIO.start.as_u64(), HIGH_MMIO.end.as_u64()),
];

/// The interrupted state as `vc.s` saves it: the general-purpose registers it pushes, then
/// the error code and the interrupt frame the CPU pushed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl VcFrame {
    /// General-purpose register `index` (0 = RAX … 15 = R15, the ModRM numbering).
    pub fn gpr(&self, index: u8) -> u64 {
        match index & 15 {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }

    fn gpr_mut(&mut self, index: u8) -> &mut u64 {
        match index & 15 {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
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
            _ => &mut self.r15,
        }
    }
}

/// What the instruction asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    PortIn {
        port: u16,
        size: u8,
    },
    PortOut {
        port: u16,
        size: u8,
        value: u64,
    },
    ReadMsr {
        msr: u32,
    },
    WriteMsr {
        msr: u32,
        value: u64,
    },
    MmioRead {
        address: u64,
        size: u8,
        dest: Gpr,
        extension: Extension,
    },
    MmioWrite {
        address: u64,
        size: u8,
        value: u64,
    },
    /// RDTSC, or RDTSCP (`with_aux`: ECX gets TSC_AUX).
    ReadTsc {
        with_aux: bool,
    },
}

/// A request and the length of the instruction that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub request: Request,
    pub len: usize,
}

/// Why a #VC could not be handled (each is fatal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcError {
    /// An exit code the handler does not emulate.
    UnhandledExit(u64),
    /// The bytes at RIP are not the instruction the exit code names.
    NotTheInstruction {
        exit_code: u64,
    },
    /// The trapping RIP is not in the kernel's code.
    OutsideKernelText(u64),
    Decode(DecodeError),
    Operand(OperandError),
    /// The instruction cannot have caused this exit.
    Mismatch {
        exit_code: u64,
        instruction: Instruction,
    },
    /// An MMIO access outside the kernel's MMIO windows.
    MmioOutsideWindows {
        address: u64,
        size: u8,
    },
    /// The hypervisor's answer was refused.
    Ghcb(GhcbError),
    /// A #VC arrived while the GHCB was in use (a #VC inside a GHCB exchange).
    GhcbBusy,
    /// A #VC before the GHCB was set up.
    NoGhcb,
    /// A CPUID #VC before the CPUID page was copied.
    NoCpuidTable,
}

impl fmt::Display for VcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnhandledExit(code) => write!(f, "exit code {code:#x} is not emulated"),
            Self::NotTheInstruction { exit_code } => {
                write!(f, "the instruction at RIP cannot raise exit {exit_code:#x}")
            }
            Self::OutsideKernelText(rip) => write!(f, "rip {rip:#x} is outside the kernel text"),
            Self::Decode(e) => write!(f, "instruction: {e}"),
            Self::Operand(e) => write!(f, "memory operand: {e}"),
            Self::Mismatch {
                exit_code,
                instruction,
            } => write!(f, "{instruction:?} cannot raise exit {exit_code:#x}"),
            Self::MmioOutsideWindows { address, size } => {
                write!(
                    f,
                    "MMIO of {size} bytes at {address:#x} is outside the MMIO windows"
                )
            }
            Self::Ghcb(e) => write!(f, "GHCB: {e}"),
            Self::GhcbBusy => f.write_str("#VC while the GHCB is in use"),
            Self::NoGhcb => f.write_str("#VC before the GHCB is set up"),
            Self::NoCpuidTable => f.write_str("CPUID #VC before the CPUID page is read"),
        }
    }
}

/// Decides what the instruction at the start of `bytes` (at `frame.rip`) asks the hypervisor
/// for, given the exit code; MMIO must fall inside one of `mmio_windows` (`[start, end)`).
pub fn plan(
    exit_code: u64,
    bytes: &[u8],
    frame: &VcFrame,
    mmio_windows: &[(u64, u64)],
) -> Result<Plan, VcError> {
    if let exit::RDTSC | exit::RDTSCP = exit_code {
        let (expected, with_aux): (&[u8], bool) = if exit_code == exit::RDTSC {
            (&RDTSC_BYTES, false)
        } else {
            (&RDTSCP_BYTES, true)
        };
        if !bytes.starts_with(expected) {
            return Err(VcError::NotTheInstruction { exit_code });
        }
        return Ok(Plan {
            request: Request::ReadTsc { with_aux },
            len: expected.len(),
        });
    }
    if !matches!(exit_code, exit::CPUID | exit::IOIO | exit::MSR | exit::NPF) {
        return Err(VcError::UnhandledExit(exit_code));
    }
    let decoded = insn::decode(bytes).map_err(VcError::Decode)?;
    let port = |port: Port| match port {
        Port::Immediate(p) => u16::from(p),
        Port::Dx => frame.rdx as u16,
    };
    let mmio_address = |size: u8| -> Result<u64, VcError> {
        let address = operand::effective_address(bytes, decoded.len, frame.rip, |i| frame.gpr(i))
            .map_err(VcError::Operand)?;
        let inside = mmio_windows.iter().any(|&(start, end)| {
            address >= start
                && address
                    .checked_add(u64::from(size))
                    .is_some_and(|e| e <= end)
        });
        if !inside {
            return Err(VcError::MmioOutsideWindows { address, size });
        }
        Ok(address)
    };
    let request = match (exit_code, decoded.instruction) {
        (exit::CPUID, Instruction::Cpuid) => Request::Cpuid {
            leaf: frame.rax as u32,
            subleaf: frame.rcx as u32,
        },
        (exit::IOIO, Instruction::In { size, port: p }) => Request::PortIn {
            port: port(p),
            size,
        },
        (exit::IOIO, Instruction::Out { size, port: p }) => Request::PortOut {
            port: port(p),
            size,
            value: truncate(frame.rax, size),
        },
        (exit::MSR, Instruction::Rdmsr) => Request::ReadMsr {
            msr: frame.rcx as u32,
        },
        (exit::MSR, Instruction::Wrmsr) => Request::WriteMsr {
            msr: frame.rcx as u32,
            value: (frame.rdx << 32) | (frame.rax & 0xFFFF_FFFF),
        },
        (
            exit::NPF,
            Instruction::MmioLoad {
                size,
                dest,
                extension,
            },
        ) => Request::MmioRead {
            address: mmio_address(size)?,
            size,
            dest,
            extension,
        },
        (exit::NPF, Instruction::MmioStore { size, source }) => Request::MmioWrite {
            address: mmio_address(size)?,
            size,
            value: match source {
                StoreSource::Register(register) => {
                    insn::store_value(frame.gpr(register.index), size, register)
                }
                StoreSource::Immediate(value) => truncate(value, size),
            },
        },
        (exit_code, instruction) => {
            return Err(VcError::Mismatch {
                exit_code,
                instruction,
            });
        }
    };
    Ok(Plan {
        request,
        len: decoded.len,
    })
}

fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xFF,
        2 => value & 0xFFFF,
        4 => value & 0xFFFF_FFFF,
        _ => value,
    }
}

/// What the hypervisor (or the CPUID page) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Nothing to write back (OUT, WRMSR, MMIO store).
    None,
    /// CPUID's EAX, EBX, ECX, EDX.
    Cpuid([u32; 4]),
    /// The value an IN, RDMSR or MMIO load returned.
    Value(u64),
    /// RDTSC's EDX:EAX, and RDTSCP's ECX.
    Tsc { tsc: u64, aux: Option<u32> },
}

/// Writes `answer` into the interrupted registers as the instruction would have, and moves
/// RIP past it.
pub fn complete(plan: &Plan, answer: Answer, frame: &mut VcFrame) {
    match (plan.request, answer) {
        (Request::Cpuid { .. }, Answer::Cpuid([a, b, c, d])) => {
            frame.rax = a.into();
            frame.rbx = b.into();
            frame.rcx = c.into();
            frame.rdx = d.into();
        }
        (Request::PortIn { size, .. }, Answer::Value(value)) => {
            frame.rax = insn::load_result(frame.rax, truncate(value, size), size, RAX, PLAIN);
        }
        (Request::ReadMsr { .. }, Answer::Value(value))
        | (
            Request::ReadTsc { .. },
            Answer::Tsc {
                tsc: value,
                aux: None,
            },
        ) => {
            frame.rax = value & 0xFFFF_FFFF;
            frame.rdx = value >> 32;
        }
        (
            Request::ReadTsc { .. },
            Answer::Tsc {
                tsc,
                aux: Some(aux),
            },
        ) => {
            frame.rax = tsc & 0xFFFF_FFFF;
            frame.rdx = tsc >> 32;
            frame.rcx = aux.into();
        }
        (
            Request::MmioRead {
                size,
                dest,
                extension,
                ..
            },
            Answer::Value(value),
        ) => {
            let register = frame.gpr_mut(dest.index);
            *register = insn::load_result(*register, truncate(value, size), size, dest, extension);
        }
        _ => {}
    }
    frame.rip = frame.rip.wrapping_add(plan.len as u64);
}

const RAX: Gpr = Gpr {
    index: 0,
    high_byte: false,
};
const PLAIN: Extension = Extension::None;

/// CR4.OSXSAVE and CR4.PKE: CPUID bits that mirror control registers, not the CPU's
/// capabilities, so the PSP-validated page cannot hold them.
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// Size of the legacy XSAVE region and the XSAVE header.
const XSAVE_BASE_SIZE: u32 = 576;

/// Leaf 0xD sub-leaf 0 (standard format) or 1 (compacted) for the live XCR0 (XSS is 0: the
/// kernel enables no supervisor state). Hypervisors fill these two entries for one XCR0 value
/// only, so EBX — the XSAVE area size for the enabled features — is computed from the
/// per-component sub-leaves (EAX size, EBX offset), as Linux does; `None` when the page lacks
/// the leaf or an enabled component.
fn xsave_leaf(table: &CpuidTable, subleaf: u32, xcr0: u64) -> Option<[u32; 4]> {
    let entry = |ecx: u32| {
        table
            .entries()
            .iter()
            .find(|e| e.eax_in == 0xD && e.ecx_in == ecx)
            .map(|e| e.out)
    };
    let mut out = entry(subleaf)?;
    let mut size = XSAVE_BASE_SIZE;
    for component in (2..64).filter(|bit| xcr0 & (1 << bit) != 0) {
        let [component_size, offset, ..] = entry(component)?;
        size = if subleaf == 0 {
            size.max(offset.checked_add(component_size)?)
        } else {
            size.checked_add(component_size)?
        };
    }
    out[1] = size;
    Some(out)
}

/// CPUID (`leaf`, `subleaf`) from the validated table: zeros for a leaf the page lacks (a
/// feature the PSP did not vouch for is absent), with the control-register mirror bits
/// (leaf 1 ECX.OSXSAVE, leaf 7 ECX.OSPKE) taken from the live CR4 and the XSAVE sizes of leaf
/// 0xD computed for the live XCR0.
pub fn cpuid_answer(table: &CpuidTable, leaf: u32, subleaf: u32, xcr0: u64, cr4: u64) -> [u32; 4] {
    let found = if leaf == 0xD && subleaf <= 1 {
        xsave_leaf(table, subleaf, xcr0)
    } else {
        table.lookup(leaf, subleaf, xcr0, 0)
    };
    let mut out = found.unwrap_or([0; 4]);
    match (leaf, subleaf) {
        (1, _) => {
            out[2] = (out[2] & !(1 << 27)) | (u32::from(cr4 & CR4_OSXSAVE != 0) << 27);
        }
        (7, 0) => {
            out[2] = (out[2] & !(1 << 4)) | (u32::from(cr4 & CR4_PKE != 0) << 4);
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: [(u64, u64); 2] = MMIO_WINDOWS;

    #[test]
    fn mmio_windows_cover_the_devices_the_kernel_maps() {
        use crate::drivers::virtio::pci::bars::{BAR_WINDOW_END, BAR_WINDOW_START};
        let inside = |a: u64, b: u64| WINDOWS.iter().any(|&(s, e)| s <= a && b <= e);
        assert!(inside(BAR_WINDOW_START, BAR_WINDOW_END), "virtio BARs");
        assert!(inside(0xFEE0_0000, 0xFEE0_1000), "xAPIC");
        assert!(inside(0xB000_0000, 0xC000_0000), "ECAM, 256 buses");
        assert!(!inside(0x10_0000, 0x10_1000), "RAM is not MMIO");
    }

    /// `vc.s` pushes RAX first and R15 last, under the error code the CPU pushed.
    #[test]
    fn frame_layout_matches_the_entry_stub() {
        use core::mem::{offset_of, size_of};
        assert_eq!(offset_of!(VcFrame, r15), 0);
        assert_eq!(offset_of!(VcFrame, rbp), 8 * 8);
        assert_eq!(offset_of!(VcFrame, rax), 14 * 8);
        assert_eq!(offset_of!(VcFrame, error_code), 15 * 8);
        assert_eq!(offset_of!(VcFrame, rip), 16 * 8);
        assert_eq!(offset_of!(VcFrame, ss), 20 * 8);
        assert_eq!(size_of::<VcFrame>(), 21 * 8);
        let mut frame = VcFrame::default();
        for i in 0..16 {
            *frame.gpr_mut(i) = u64::from(i) + 100;
        }
        assert_eq!(
            (frame.rax, frame.rsp, frame.rdi, frame.r15),
            (100, 104, 107, 115)
        );
        assert_eq!(frame.gpr(13), 113);
    }

    fn frame() -> VcFrame {
        VcFrame {
            rax: 0x1111_2222_3333_4444,
            rcx: 0xC000_0080,
            rdx: 0x3F8,
            rbx: 0xB000_8000,
            rdi: 0xFE00_1000,
            rip: 0xFFFF_FFFF_8000_1000,
            ..VcFrame::default()
        }
    }

    fn planned(exit_code: u64, bytes: &[u8]) -> Result<Plan, VcError> {
        plan(exit_code, bytes, &frame(), &WINDOWS)
    }

    #[test]
    fn port_io_uses_dx_or_the_immediate_and_al_ax_eax() {
        // out dx, al
        assert_eq!(
            planned(exit::IOIO, &[0xEE]),
            Ok(Plan {
                request: Request::PortOut {
                    port: 0x3F8,
                    size: 1,
                    value: 0x44
                },
                len: 1
            })
        );
        // in eax, dx
        let p = planned(exit::IOIO, &[0xED]).unwrap();
        assert_eq!(
            p.request,
            Request::PortIn {
                port: 0x3F8,
                size: 4
            }
        );
        let mut f = frame();
        complete(&p, Answer::Value(0xFFFF_FFFF_8765_4321), &mut f);
        assert_eq!(f.rax, 0x8765_4321, "IN EAX clears bits 63:32");
        assert_eq!(f.rip, frame().rip + 1);
        // in al, 0x61 keeps the rest of RAX
        let p = planned(exit::IOIO, &[0xE4, 0x61]).unwrap();
        assert_eq!(
            p.request,
            Request::PortIn {
                port: 0x61,
                size: 1
            }
        );
        let mut f = frame();
        complete(&p, Answer::Value(0x1AB), &mut f);
        assert_eq!(f.rax, 0x1111_2222_3333_44AB);
        assert_eq!(f.rip, frame().rip + 2);
        // out dx, ax
        assert_eq!(
            planned(exit::IOIO, &[0x66, 0xEF]).unwrap().request,
            Request::PortOut {
                port: 0x3F8,
                size: 2,
                value: 0x4444
            }
        );
    }

    #[test]
    fn tsc_reads_fill_edx_eax_and_ecx() {
        let p = planned(exit::RDTSC, &[0x0F, 0x31, 0x90]).unwrap();
        assert_eq!(
            p,
            Plan {
                request: Request::ReadTsc { with_aux: false },
                len: 2
            }
        );
        let mut f = frame();
        complete(
            &p,
            Answer::Tsc {
                tsc: 0x0000_0012_3456_789A,
                aux: None,
            },
            &mut f,
        );
        assert_eq!((f.rax, f.rdx, f.rcx), (0x3456_789A, 0x12, frame().rcx));
        assert_eq!(f.rip, frame().rip + 2);
        let p = planned(exit::RDTSCP, &[0x0F, 0x01, 0xF9]).unwrap();
        let mut f = frame();
        complete(
            &p,
            Answer::Tsc {
                tsc: 5,
                aux: Some(3),
            },
            &mut f,
        );
        assert_eq!((f.rax, f.rdx, f.rcx, f.rip), (5, 0, 3, frame().rip + 3));
    }

    #[test]
    fn msr_reads_split_into_edx_eax() {
        let p = planned(exit::MSR, &[0x0F, 0x32]).unwrap();
        assert_eq!(p.request, Request::ReadMsr { msr: 0xC000_0080 });
        let mut f = frame();
        complete(&p, Answer::Value(0x1234_5678_9ABC_DEF0), &mut f);
        assert_eq!((f.rax, f.rdx), (0x9ABC_DEF0, 0x1234_5678));
        let mut f = frame();
        f.rdx = 0xAA;
        assert_eq!(
            plan(exit::MSR, &[0x0F, 0x30], &f, &WINDOWS)
                .unwrap()
                .request,
            Request::WriteMsr {
                msr: 0xC000_0080,
                value: 0xAA_3333_4444
            }
        );
    }

    #[test]
    fn mmio_loads_and_stores_inside_the_windows() {
        // mov eax, [rdi+0x14]
        let p = planned(exit::NPF, &[0x8B, 0x47, 0x14]).unwrap();
        assert_eq!(
            p.request,
            Request::MmioRead {
                address: 0xFE00_1014,
                size: 4,
                dest: RAX,
                extension: Extension::None
            }
        );
        let mut f = frame();
        complete(&p, Answer::Value(0xDEAD_BEEF), &mut f);
        assert_eq!(f.rax, 0xDEAD_BEEF);
        // movzx ecx, byte [rbx+2] (ECAM)
        let p = planned(exit::NPF, &[0x0F, 0xB6, 0x4B, 0x02]).unwrap();
        let mut f = frame();
        complete(&p, Answer::Value(0x1FF), &mut f);
        assert_eq!(f.rcx, 0xFF);
        // mov [rdi], ecx
        assert_eq!(
            planned(exit::NPF, &[0x89, 0x0F]).unwrap().request,
            Request::MmioWrite {
                address: 0xFE00_1000,
                size: 4,
                value: 0xC000_0080
            }
        );
        // mov word [rdi+2], 0x1234
        assert_eq!(
            planned(exit::NPF, &[0x66, 0xC7, 0x47, 0x02, 0x34, 0x12])
                .unwrap()
                .request,
            Request::MmioWrite {
                address: 0xFE00_1002,
                size: 2,
                value: 0x1234
            }
        );
    }

    #[test]
    fn refusals_are_fatal_errors() {
        // mov eax, [rdx]: 0x3F8 is RAM, not MMIO.
        assert_eq!(
            planned(exit::NPF, &[0x8B, 0x02]),
            Err(VcError::MmioOutsideWindows {
                address: 0x3F8,
                size: 4
            })
        );
        // An access straddling the end of the last window.
        let mut f = frame();
        f.rdi = 0xFFFF_FFFE;
        assert_eq!(
            plan(exit::NPF, &[0x8B, 0x07], &f, &WINDOWS),
            Err(VcError::MmioOutsideWindows {
                address: 0xFFFF_FFFE,
                size: 4
            })
        );
        // CPUID bytes under an IOIO exit.
        assert!(matches!(
            planned(exit::IOIO, &[0x0F, 0xA2]),
            Err(VcError::Mismatch {
                exit_code: 0x7B,
                ..
            })
        ));
        // rep outsb
        assert_eq!(
            planned(exit::IOIO, &[0xF3, 0x6E]),
            Err(VcError::Decode(DecodeError::UnsupportedPrefix(0xF3)))
        );
        // RDTSC (0x6E) and unknown exits.
        assert_eq!(
            planned(0x6F, &[0x0F, 0x31]),
            Err(VcError::UnhandledExit(0x6F))
        );
        assert_eq!(
            planned(exit::RDTSC, &[0x0F, 0xA2]),
            Err(VcError::NotTheInstruction {
                exit_code: exit::RDTSC
            })
        );
        assert_eq!(
            planned(exit::RDTSCP, &[0x0F, 0x31]),
            Err(VcError::NotTheInstruction {
                exit_code: exit::RDTSCP
            })
        );
        // mov eax, fs:[rdi]
        assert_eq!(
            planned(exit::NPF, &[0x64, 0x8B, 0x07]),
            Err(VcError::Operand(OperandError::UnsupportedPrefix(0x64)))
        );
    }

    #[test]
    fn cpuid_comes_from_the_page_with_cr4_mirrors() {
        // A CPUID page: leaf 1 claims OSXSAVE (the hypervisor cannot make it true), leaf 7.
        let mut page = [0u8; 4096];
        page[0] = 7;
        let entries: [(u32, u32, [u32; 4]); 7] = [
            (
                1,
                0,
                [
                    0x00A0_0F11,
                    0x0000_0800,
                    0x7EF8_320B | (1 << 27),
                    0x178B_FBFF,
                ],
            ),
            (7, 0, [0, 0x219C_07AB, 1 << 4, 0]),
            // Leaf 0xD as a hypervisor fills it (sizes for XCR0 = 1 only), then the AVX,
            // opmask and ZMM_Hi256 components (size, offset).
            (0xD, 0, [0xE7, 0x240, 0x988, 0]),
            (0xD, 1, [0xF, 0x240, 0, 0]),
            (0xD, 2, [0x100, 0x240, 0, 0]),
            (0xD, 5, [0x40, 0x440, 0, 0]),
            (0xD, 6, [0x200, 0x480, 0, 0]),
        ];
        for (i, (leaf, subleaf, out)) in entries.iter().enumerate() {
            let at = 16 + i * 48;
            page[at..at + 4].copy_from_slice(&leaf.to_le_bytes());
            page[at + 4..at + 8].copy_from_slice(&subleaf.to_le_bytes());
            for (j, r) in out.iter().enumerate() {
                page[at + 24 + 4 * j..at + 28 + 4 * j].copy_from_slice(&r.to_le_bytes());
            }
        }
        let table = CpuidTable::parse(&page).unwrap();
        let leaf1 = cpuid_answer(&table, 1, 0, 7, 0);
        assert_eq!(leaf1[2] & (1 << 27), 0, "OSXSAVE follows CR4, not the page");
        assert_eq!(cpuid_answer(&table, 1, 0, 7, CR4_OSXSAVE)[2] >> 27 & 1, 1);
        assert_eq!(leaf1[3], 0x178B_FBFF);
        assert_eq!(cpuid_answer(&table, 7, 0, 7, 0)[2], 0);
        assert_eq!(cpuid_answer(&table, 7, 0, 7, CR4_PKE)[2], 1 << 4);
        assert_eq!(cpuid_answer(&table, 7, 0, 7, 0)[1], 0x219C_07AB);
        // Absent leaves (hypervisor leaves included) read as zeros.
        assert_eq!(cpuid_answer(&table, 0x4000_0000, 0, 7, 0), [0; 4]);
        // XSAVE sizes follow the live XCR0: x87|SSE only, + AVX, + AVX-512 opmask/ZMM_Hi256;
        // a component the page lacks (Hi16_ZMM, bit 7) makes the leaf unknown, hence zeros.
        assert_eq!(cpuid_answer(&table, 0xD, 0, 0x3, 0), [0xE7, 576, 0x988, 0]);
        assert_eq!(cpuid_answer(&table, 0xD, 0, 0x7, 0)[1], 0x240 + 0x100);
        assert_eq!(cpuid_answer(&table, 0xD, 0, 0x67, 0)[1], 0x480 + 0x200);
        assert_eq!(
            cpuid_answer(&table, 0xD, 1, 0x67, 0)[1],
            576 + 0x100 + 0x40 + 0x200
        );
        assert_eq!(cpuid_answer(&table, 0xD, 0, 0xE7, 0), [0; 4]);
        assert_eq!(
            cpuid_answer(&table, 0xD, 2, 0x7, 0),
            [0x100, 0x240, 0, 0],
            "component sub-leaves come from the page as they are"
        );

        let p = planned(exit::CPUID, &[0x0F, 0xA2]).unwrap();
        assert_eq!(
            p.request,
            Request::Cpuid {
                leaf: 0x3333_4444,
                subleaf: 0xC000_0080
            }
        );
        let mut f = frame();
        complete(&p, Answer::Cpuid([1, 2, 3, 4]), &mut f);
        assert_eq!((f.rax, f.rbx, f.rcx, f.rdx), (1, 2, 3, 4));
        assert_eq!(f.rip, frame().rip + 2);
    }
}
