//! TDCALL leaves to the TDX module (Intel TDX Module ABI spec, "TDCALL Instruction Leaf
//! Numbers"): the inputs each leaf takes in registers and the checks on what it returns.
//! RAX carries the leaf on entry and the completion status on return.

use core::fmt;

/// Registers of a TDCALL (inputs before, outputs after). The assembly stub loads and stores
/// exactly these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TdcallRegisters {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Leaf numbers.
pub mod leaf {
    pub const VP_VMCALL: u64 = 0;
    pub const VP_INFO: u64 = 1;
    pub const MR_RTMR_EXTEND: u64 = 2;
    pub const VP_VEINFO_GET: u64 = 3;
    pub const MR_REPORT: u64 = 4;
    pub const MEM_PAGE_ACCEPT: u64 = 6;
}

/// A failed TDCALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdcallError {
    /// TDG.MEM.PAGE.ACCEPT at 2 MiB on memory the host mapped with 4 KiB pages: retry at 4 KiB.
    PageSizeMismatch,
    /// The page was accepted before (a host replaying an accepted page into our map).
    AlreadyAccepted,
    /// Any other non-zero status.
    Status(u64),
    /// An argument not meeting the leaf's alignment or range rules (caught before the call).
    BadArgument(&'static str),
    /// TDG.VP.INFO returned a GPA width no TD can have.
    BadGpaWidth(u64),
}

impl fmt::Display for TdcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PageSizeMismatch => f.write_str("TDX page size mismatch"),
            Self::AlreadyAccepted => f.write_str("TDX page already accepted"),
            Self::Status(s) => write!(f, "TDCALL failed with status {s:#018x}"),
            Self::BadArgument(what) => write!(f, "bad TDCALL argument: {what}"),
            Self::BadGpaWidth(w) => write!(f, "TD GPA width {w} is neither 48 nor 52"),
        }
    }
}

const STATUS_CLASS_MASK: u64 = 0xFFFF_FFFF_0000_0000;
const PAGE_SIZE_MISMATCH: u64 = 0xC000_0B0B_0000_0000;
const PAGE_ALREADY_ACCEPTED: u64 = 0x0000_0B0A_0000_0000;

/// Interprets RAX after a TDCALL.
pub fn check_status(rax: u64) -> Result<(), TdcallError> {
    match rax & STATUS_CLASS_MASK {
        0 if rax == 0 => Ok(()),
        PAGE_SIZE_MISMATCH => Err(TdcallError::PageSizeMismatch),
        PAGE_ALREADY_ACCEPTED => Err(TdcallError::AlreadyAccepted),
        _ => Err(TdcallError::Status(rax)),
    }
}

/// TDG.VP.INFO: no inputs.
pub fn vp_info() -> TdcallRegisters {
    TdcallRegisters {
        rax: leaf::VP_INFO,
        ..Default::default()
    }
}

/// What TDG.VP.INFO tells the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdInfo {
    /// Guest physical address width: 48 or 52.
    pub gpa_width: u8,
    /// TD ATTRIBUTES (bit 0: DEBUG).
    pub attributes: u64,
    pub num_vcpus: u32,
    pub max_vcpus: u32,
}

impl TdInfo {
    /// The shared bit: GPA bit `gpa_width - 1` marks an address as shared with the host.
    pub fn shared_mask(&self) -> u64 {
        1 << (self.gpa_width - 1)
    }

    /// Whether this is a debug TD (its memory and state are readable by the host).
    pub fn debug(&self) -> bool {
        self.attributes & 1 != 0
    }
}

/// Decodes TDG.VP.INFO's outputs.
pub fn decode_vp_info(out: &TdcallRegisters) -> Result<TdInfo, TdcallError> {
    check_status(out.rax)?;
    let gpa_width = out.rcx & 0x3F;
    if gpa_width != 48 && gpa_width != 52 {
        return Err(TdcallError::BadGpaWidth(gpa_width));
    }
    Ok(TdInfo {
        gpa_width: gpa_width as u8,
        attributes: out.rdx,
        num_vcpus: out.r8 as u32,
        max_vcpus: (out.r8 >> 32) as u32,
    })
}

/// Accept granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptSize {
    Page4K = 0,
    Page2M = 1,
}

impl AcceptSize {
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Page4K => 0x1000,
            Self::Page2M => 0x20_0000,
        }
    }
}

/// TDG.MEM.PAGE.ACCEPT of the page at `gpa` (aligned to `size`; private address, shared bit
/// clear).
pub fn page_accept(gpa: u64, size: AcceptSize) -> Result<TdcallRegisters, TdcallError> {
    if !gpa.is_multiple_of(size.bytes()) {
        return Err(TdcallError::BadArgument(
            "accept address not aligned to its page size",
        ));
    }
    Ok(TdcallRegisters {
        rax: leaf::MEM_PAGE_ACCEPT,
        rcx: gpa | size as u64,
        ..Default::default()
    })
}

/// TDG.MR.REPORT: the TDREPORT_STRUCT (1024 bytes, 1024-aligned) is written at `report_gpa`
/// for the 64-byte REPORTDATA at `data_gpa` (64-aligned), sub-type 0.
pub fn mr_report(report_gpa: u64, data_gpa: u64) -> Result<TdcallRegisters, TdcallError> {
    if !report_gpa.is_multiple_of(1024) {
        return Err(TdcallError::BadArgument(
            "TDREPORT buffer not 1024-byte aligned",
        ));
    }
    if !data_gpa.is_multiple_of(64) {
        return Err(TdcallError::BadArgument("REPORTDATA not 64-byte aligned"));
    }
    Ok(TdcallRegisters {
        rax: leaf::MR_REPORT,
        rcx: report_gpa,
        rdx: data_gpa,
        r8: 0,
        ..Default::default()
    })
}

/// TDG.MR.RTMR.EXTEND of RTMR`index` (0..=3) with the 48-byte digest at `digest_gpa`
/// (64-aligned).
pub fn rtmr_extend(digest_gpa: u64, index: u8) -> Result<TdcallRegisters, TdcallError> {
    if index > 3 {
        return Err(TdcallError::BadArgument("RTMR index above 3"));
    }
    if !digest_gpa.is_multiple_of(64) {
        return Err(TdcallError::BadArgument(
            "RTMR extend data not 64-byte aligned",
        ));
    }
    Ok(TdcallRegisters {
        rax: leaf::MR_RTMR_EXTEND,
        rcx: digest_gpa,
        rdx: index.into(),
        ..Default::default()
    })
}

/// TDG.VP.VEINFO.GET: no inputs; see [`super::ve`] for the outputs.
pub fn ve_info_get() -> TdcallRegisters {
    TdcallRegisters {
        rax: leaf::VP_VEINFO_GET,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp_info_gives_the_shared_bit() {
        let out = TdcallRegisters {
            rax: 0,
            rcx: 52,
            rdx: 0,
            r8: (4 << 32) | 2,
            ..Default::default()
        };
        let info = decode_vp_info(&out).unwrap();
        assert_eq!(info.shared_mask(), 1 << 51);
        assert_eq!((info.num_vcpus, info.max_vcpus), (2, 4));
        assert!(!info.debug());
        let out48 = TdcallRegisters {
            rcx: 48 | (7 << 8),
            rdx: 1,
            ..Default::default()
        };
        let info = decode_vp_info(&out48).unwrap();
        assert_eq!(info.shared_mask(), 1 << 47);
        assert!(info.debug());
        assert_eq!(
            decode_vp_info(&TdcallRegisters {
                rcx: 40,
                ..Default::default()
            }),
            Err(TdcallError::BadGpaWidth(40))
        );
        assert_eq!(vp_info().rax, 1);
    }

    #[test]
    fn accept_encoding_and_statuses() {
        assert_eq!(
            page_accept(0x20_0000, AcceptSize::Page2M).unwrap().rcx,
            0x20_0001
        );
        assert_eq!(page_accept(0x1000, AcceptSize::Page4K).unwrap().rax, 6);
        assert!(page_accept(0x1000, AcceptSize::Page2M).is_err());
        assert_eq!(check_status(0), Ok(()));
        assert_eq!(
            check_status(0xC000_0B0B_0000_0001),
            Err(TdcallError::PageSizeMismatch)
        );
        assert_eq!(
            check_status(0x0000_0B0A_0000_0000),
            Err(TdcallError::AlreadyAccepted)
        );
        assert_eq!(
            check_status(0x8000_0000_0000_0000),
            Err(TdcallError::Status(0x8000_0000_0000_0000))
        );
        assert_eq!(check_status(1), Err(TdcallError::Status(1)));
    }

    #[test]
    fn report_and_rtmr_arguments() {
        let r = mr_report(0x5000_0400, 0x5000_0040).unwrap();
        assert_eq!(
            (r.rax, r.rcx, r.rdx, r.r8),
            (4, 0x5000_0400, 0x5000_0040, 0)
        );
        assert!(mr_report(0x5000_0200, 0x5000_0040).is_err());
        assert!(mr_report(0x5000_0400, 0x5000_0020).is_err());
        let e = rtmr_extend(0x6000_0000, 2).unwrap();
        assert_eq!((e.rax, e.rcx, e.rdx), (2, 0x6000_0000, 2));
        assert!(rtmr_extend(0x6000_0000, 4).is_err());
        assert!(rtmr_extend(0x6000_0010, 0).is_err());
        assert_eq!(ve_info_get().rax, 3);
    }
}
