//! TDG.VP.VMCALL sub-functions (Intel GHCI spec): requests from the TD to the host VMM, made
//! with TDCALL leaf 0. R10 = 0 selects the GHCI standard set, R11 the sub-function, R12.. the
//! arguments; RCX says which registers the VMM may see (only R10–R15: nothing else leaks).
//! Every output comes from the host and is untrusted.

use super::tdcall::{TdcallRegisters, leaf};
use core::fmt;

/// Sub-function numbers.
pub mod function {
    pub const CPUID: u64 = 10;
    pub const HLT: u64 = 12;
    pub const IO: u64 = 30;
    pub const RDMSR: u64 = 31;
    pub const WRMSR: u64 = 32;
    pub const MMIO: u64 = 48;
    pub const MAP_GPA: u64 = 0x10001;
    pub const GET_QUOTE: u64 = 0x10002;
}

/// RCX: R10, R11, R12, R13, R14, R15 are passed to the VMM.
pub const EXPOSED_REGISTERS: u64 = 0xFC00;

const STATUS_SUCCESS: u64 = 0;
const STATUS_RETRY: u64 = 1;

/// A VMM answer other than success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdvmcallError {
    /// TDG.VP.VMCALL_RETRY; for MapGPA, R11 holds the GPA to resume from.
    Retry { resume_at: u64 },
    /// Any other status in R10 (invalid operand, alignment, GPA in use, ...).
    Status(u64),
    /// The TDCALL itself failed (RAX).
    Tdcall(u64),
    /// An argument out of range, caught before the call.
    BadArgument(&'static str),
}

impl fmt::Display for TdvmcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry { resume_at } => write!(f, "VMM asked to retry from {resume_at:#x}"),
            Self::Status(s) => write!(f, "VMM refused the TDVMCALL ({s:#018x})"),
            Self::Tdcall(s) => write!(f, "TDCALL(VP.VMCALL) failed ({s:#018x})"),
            Self::BadArgument(what) => write!(f, "bad TDVMCALL argument: {what}"),
        }
    }
}

fn call(sub: u64, r12: u64, r13: u64, r14: u64, r15: u64) -> TdcallRegisters {
    TdcallRegisters {
        rax: leaf::VP_VMCALL,
        rcx: EXPOSED_REGISTERS,
        r10: 0,
        r11: sub,
        r12,
        r13,
        r14,
        r15,
        ..Default::default()
    }
}

/// Checks RAX (TDX module) and R10 (VMM) after the call.
pub fn check(out: &TdcallRegisters) -> Result<(), TdvmcallError> {
    if out.rax != 0 {
        return Err(TdvmcallError::Tdcall(out.rax));
    }
    match out.r10 {
        STATUS_SUCCESS => Ok(()),
        STATUS_RETRY => Err(TdvmcallError::Retry { resume_at: out.r11 }),
        s => Err(TdvmcallError::Status(s)),
    }
}

fn access_size(size: u8) -> Result<u64, TdvmcallError> {
    match size {
        1 | 2 | 4 | 8 => Ok(size.into()),
        _ => Err(TdvmcallError::BadArgument("access size not 1, 2, 4 or 8")),
    }
}

fn mask(size: u8) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(size))) - 1
    }
}

/// CPUID through the VMM (leaves the TDX module leaves to the host; the caller decides
/// whether a host-chosen value is acceptable for that leaf).
pub fn cpuid(leaf: u32, subleaf: u32) -> TdcallRegisters {
    call(function::CPUID, leaf.into(), subleaf.into(), 0, 0)
}

/// `[eax, ebx, ecx, edx]` from a CPUID TDVMCALL.
pub fn cpuid_result(out: &TdcallRegisters) -> Result<[u32; 4], TdvmcallError> {
    check(out)?;
    Ok([
        out.r12 as u32,
        out.r13 as u32,
        out.r14 as u32,
        out.r15 as u32,
    ])
}

/// Port I/O: `write` = Some(value) for OUT, None for IN.
pub fn io(port: u16, size: u8, write: Option<u32>) -> Result<TdcallRegisters, TdvmcallError> {
    if !matches!(size, 1 | 2 | 4) {
        return Err(TdvmcallError::BadArgument("port access size not 1, 2 or 4"));
    }
    let (direction, value) = match write {
        Some(v) => (1, u64::from(v) & mask(size)),
        None => (0, 0),
    };
    Ok(call(
        function::IO,
        size.into(),
        direction,
        port.into(),
        value,
    ))
}

/// The value an IN returned, cut to the access size.
pub fn io_in_result(out: &TdcallRegisters, size: u8) -> Result<u32, TdvmcallError> {
    check(out)?;
    Ok((out.r11 & mask(size)) as u32)
}

/// MMIO through the VMM at shared `gpa`.
pub fn mmio(gpa: u64, size: u8, write: Option<u64>) -> Result<TdcallRegisters, TdvmcallError> {
    let size_arg = access_size(size)?;
    if !gpa.is_multiple_of(u64::from(size)) {
        return Err(TdvmcallError::BadArgument("unaligned MMIO access"));
    }
    let (direction, value) = match write {
        Some(v) => (1, v & mask(size)),
        None => (0, 0),
    };
    Ok(call(function::MMIO, size_arg, direction, gpa, value))
}

/// The value an MMIO read returned, cut to the access size.
pub fn mmio_read_result(out: &TdcallRegisters, size: u8) -> Result<u64, TdvmcallError> {
    check(out)?;
    Ok(out.r11 & mask(size))
}

pub fn rdmsr(index: u32) -> TdcallRegisters {
    call(function::RDMSR, index.into(), 0, 0, 0)
}

pub fn rdmsr_result(out: &TdcallRegisters) -> Result<u64, TdvmcallError> {
    check(out)?;
    Ok(out.r11)
}

pub fn wrmsr(index: u32, value: u64) -> TdcallRegisters {
    call(function::WRMSR, index.into(), value, 0, 0)
}

/// MapGPA: converts `[gpa, gpa + len)` to shared (`shared_mask` set in `gpa`) or private.
pub fn map_gpa(gpa: u64, len: u64) -> Result<TdcallRegisters, TdvmcallError> {
    if !gpa.is_multiple_of(0x1000) || !len.is_multiple_of(0x1000) || len == 0 {
        return Err(TdvmcallError::BadArgument(
            "MapGPA range not whole 4 KiB pages",
        ));
    }
    Ok(call(function::MAP_GPA, gpa, len, 0, 0))
}

/// For a MapGPA retry: the rest of the range, after checking the VMM's resume address lies
/// inside what we asked for and moved forward (else the VMM could make us loop or skip pages).
pub fn map_gpa_resume(gpa: u64, len: u64, resume_at: u64) -> Result<(u64, u64), TdvmcallError> {
    let end = gpa + len;
    if resume_at <= gpa || resume_at >= end || !resume_at.is_multiple_of(0x1000) {
        return Err(TdvmcallError::BadArgument(
            "MapGPA resume address outside the request",
        ));
    }
    Ok((resume_at, end - resume_at))
}

/// GetQuote on the shared buffer at `gpa` of `len` bytes (see [`super::getquote`]).
pub fn get_quote(gpa: u64, len: u64) -> Result<TdcallRegisters, TdvmcallError> {
    if !gpa.is_multiple_of(0x1000) {
        return Err(TdvmcallError::BadArgument(
            "GetQuote buffer not 4 KiB aligned",
        ));
    }
    Ok(call(function::GET_QUOTE, gpa, len, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let c = cpuid(0x7, 1);
        assert_eq!(
            (c.rax, c.rcx, c.r10, c.r11, c.r12, c.r13),
            (0, 0xFC00, 0, 10, 7, 1)
        );
        let o = io(0x3F8, 1, Some(0x1_41)).unwrap();
        assert_eq!((o.r11, o.r12, o.r13, o.r14, o.r15), (30, 1, 1, 0x3F8, 0x41));
        let i = io(0xCFC, 4, None).unwrap();
        assert_eq!((i.r12, i.r13, i.r14), (4, 0, 0xCFC));
        assert!(io(0xCFC, 8, None).is_err());
        let m = mmio(0x8_0000_1004, 4, Some(0xAABB_CCDD_EEFF)).unwrap();
        assert_eq!(
            (m.r11, m.r12, m.r13, m.r14, m.r15),
            (48, 4, 1, 0x8_0000_1004, 0xCCDD_EEFF)
        );
        assert!(mmio(0x8_0000_1002, 4, None).is_err());
        assert!(mmio(0x8_0000_1000, 3, None).is_err());
        assert_eq!(rdmsr(0x1B).r12, 0x1B);
        let w = wrmsr(0x6E0, 0x1234);
        assert_eq!((w.r11, w.r12, w.r13), (32, 0x6E0, 0x1234));
        let g = map_gpa(0x8_0010_0000, 0x4000).unwrap();
        assert_eq!((g.r11, g.r12, g.r13), (0x10001, 0x8_0010_0000, 0x4000));
        assert!(map_gpa(0x100, 0x1000).is_err());
        let q = get_quote(0x8_0020_0000, 0x4000).unwrap();
        assert_eq!((q.r11, q.r12, q.r13), (0x10002, 0x8_0020_0000, 0x4000));
    }

    #[test]
    fn outputs_are_checked_and_cut() {
        let ok = TdcallRegisters {
            r11: 0xFFFF_FF12,
            ..Default::default()
        };
        assert_eq!(io_in_result(&ok, 1), Ok(0x12));
        assert_eq!(mmio_read_result(&ok, 2), Ok(0xFF12));
        assert_eq!(rdmsr_result(&ok), Ok(0xFFFF_FF12));
        let c = TdcallRegisters {
            r12: 1,
            r13: 2,
            r14: 3,
            r15: 0x1_0000_0004,
            ..Default::default()
        };
        assert_eq!(cpuid_result(&c), Ok([1, 2, 3, 4]));
        let retry = TdcallRegisters {
            r10: 1,
            r11: 0x2000,
            ..Default::default()
        };
        assert_eq!(
            check(&retry),
            Err(TdvmcallError::Retry { resume_at: 0x2000 })
        );
        let bad = TdcallRegisters {
            r10: 0x8000_0000_0000_0002,
            ..Default::default()
        };
        assert_eq!(
            check(&bad),
            Err(TdvmcallError::Status(0x8000_0000_0000_0002))
        );
        let td = TdcallRegisters {
            rax: 5,
            ..Default::default()
        };
        assert_eq!(check(&td), Err(TdvmcallError::Tdcall(5)));
    }

    #[test]
    fn map_gpa_resume_stays_inside() {
        assert_eq!(
            map_gpa_resume(0x10000, 0x4000, 0x12000),
            Ok((0x12000, 0x2000))
        );
        assert!(
            map_gpa_resume(0x10000, 0x4000, 0x10000).is_err(),
            "no progress"
        );
        assert!(
            map_gpa_resume(0x10000, 0x4000, 0x14000).is_err(),
            "past the end"
        );
        assert!(
            map_gpa_resume(0x10000, 0x4000, 0x8000).is_err(),
            "backwards"
        );
        assert!(
            map_gpa_resume(0x10000, 0x4000, 0x12800).is_err(),
            "unaligned"
        );
    }
}
