//! Converting guest pages between private and shared (GHCI "TDG.VP.VMCALL<MapGPA>", TDX Module
//! ABI "TDG.MEM.PAGE.ACCEPT"). To share, the TD asks the host to map the range at its shared
//! alias (the shared bit set); to take pages back, it asks for the private alias and then
//! accepts every page, since the host adds them back as pending pages that hold nothing of the
//! TD's until accepted.
//!
//! The host may answer MapGPA with "retry" and the address to resume from. The resume address
//! must lie inside the request; a retry that makes no progress is allowed a few times in a row
//! (the host may be briefly busy, as Linux allows), after which the conversion fails, so a host
//! cannot keep the TD looping.

use super::TdCall;
use core::fmt;
use ward_attestation::guest::tdx::tdcall::{self, AcceptSize, TdcallError};
use ward_attestation::guest::tdx::tdvmcall::{self, TdvmcallError};

/// Retries without progress accepted in a row.
pub const MAX_STALLED_RETRIES: u32 = 3;

/// Why a conversion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// The range is empty, not whole pages, overflows, or already carries the shared bit.
    BadRange {
        /// First byte.
        start: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The host refused MapGPA, or its resume address was outside the request.
    MapGpa(TdvmcallError),
    /// The host kept asking to retry at the same address.
    Stalled {
        /// Where it got stuck.
        at: u64,
    },
    /// TDG.MEM.PAGE.ACCEPT failed (an already-accepted page included: the host did not
    /// actually give the page back).
    Accept {
        /// The page.
        gpa: u64,
        /// The module's answer.
        error: TdcallError,
    },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { start, len } => {
                write!(
                    f,
                    "cannot convert {len:#x} bytes at {start:#x}: not whole private pages"
                )
            }
            Self::MapGpa(e) => write!(f, "MapGPA: {e}"),
            Self::Stalled { at } => write!(
                f,
                "MapGPA: the host asked to retry at {at:#x} more than {MAX_STALLED_RETRIES} times"
            ),
            Self::Accept { gpa, error } => write!(f, "accepting {gpa:#x}: {error}"),
        }
    }
}

const PAGE: u64 = 0x1000;

fn check_range(start: u64, len: u64, shared_mask: u64) -> Result<u64, ConvertError> {
    let bad = ConvertError::BadRange { start, len };
    let end = start.checked_add(len).ok_or(bad)?;
    if len == 0
        || !start.is_multiple_of(PAGE)
        || !len.is_multiple_of(PAGE)
        || (start | (end - 1)) & shared_mask != 0
    {
        return Err(bad);
    }
    Ok(end)
}

/// MapGPA of `[gpa, gpa + len)` (`gpa` names the alias wanted: shared bit set or clear).
pub fn map_gpa(td: &mut impl TdCall, gpa: u64, len: u64) -> Result<(), ConvertError> {
    let end = gpa + len;
    let mut start = gpa;
    let mut stalled = 0;
    loop {
        let mut registers = tdvmcall::map_gpa(start, end - start).map_err(ConvertError::MapGpa)?;
        td.call(&mut registers);
        match tdvmcall::check(&registers) {
            Ok(()) => return Ok(()),
            Err(TdvmcallError::Retry { resume_at }) if resume_at == start => {
                stalled += 1;
                if stalled > MAX_STALLED_RETRIES {
                    return Err(ConvertError::Stalled { at: start });
                }
            }
            Err(TdvmcallError::Retry { resume_at }) => {
                let (next, _) = tdvmcall::map_gpa_resume(start, end - start, resume_at)
                    .map_err(ConvertError::MapGpa)?;
                start = next;
                stalled = 0;
            }
            Err(other) => return Err(ConvertError::MapGpa(other)),
        }
    }
}

/// Accepts `[start, start + len)` (private addresses): 2 MiB at a time where aligned, 4 KiB
/// otherwise or where the host mapped the range with small pages.
pub fn accept(td: &mut impl TdCall, start: u64, len: u64) -> Result<(), ConvertError> {
    let end = start + len;
    let mut at = start;
    while at < end {
        let large =
            at.is_multiple_of(AcceptSize::Page2M.bytes()) && end - at >= AcceptSize::Page2M.bytes();
        if large {
            match accept_one(td, at, AcceptSize::Page2M) {
                Ok(()) => {
                    at += AcceptSize::Page2M.bytes();
                    continue;
                }
                Err(TdcallError::PageSizeMismatch) => {}
                Err(error) => return Err(ConvertError::Accept { gpa: at, error }),
            }
        }
        accept_one(td, at, AcceptSize::Page4K)
            .map_err(|error| ConvertError::Accept { gpa: at, error })?;
        at += PAGE;
    }
    Ok(())
}

fn accept_one(td: &mut impl TdCall, gpa: u64, size: AcceptSize) -> Result<(), TdcallError> {
    let mut registers = tdcall::page_accept(gpa, size)?;
    td.call(&mut registers);
    tdcall::check_status(registers.rax)
}

/// Makes the private pages `[start, start + len)` shared.
pub fn to_shared(
    td: &mut impl TdCall,
    start: u64,
    len: u64,
    shared_mask: u64,
) -> Result<(), ConvertError> {
    check_range(start, len, shared_mask)?;
    map_gpa(td, start | shared_mask, len)
}

/// Makes the shared pages `[start, start + len)` (named by their private address) private again.
pub fn to_private(
    td: &mut impl TdCall,
    start: u64,
    len: u64,
    shared_mask: u64,
) -> Result<(), ConvertError> {
    check_range(start, len, shared_mask)?;
    map_gpa(td, start, len)?;
    accept(td, start, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use ward_attestation::guest::tdx::tdcall::{TdcallRegisters, leaf};
    use ward_attestation::guest::tdx::tdvmcall::function;

    const SHARED: u64 = 1 << 47;

    /// A host that answers MapGPA from a script of (R10, R11) pairs (then success), and a TDX
    /// module that accepts pages, with 2 MiB refused where `small_pages` says so.
    #[derive(Default)]
    struct Simulated {
        map_answers: Vec<(u64, u64)>,
        map_requests: Vec<(u64, u64)>,
        accepted: Vec<(u64, u64)>,
        small_pages: bool,
        accept_status: u64,
    }

    impl TdCall for Simulated {
        fn call(&mut self, registers: &mut TdcallRegisters) {
            match registers.rax {
                leaf::VP_VMCALL => {
                    assert_eq!(registers.r11, function::MAP_GPA);
                    self.map_requests.push((registers.r12, registers.r13));
                    let (r10, r11) = if self.map_answers.is_empty() {
                        (0, 0)
                    } else {
                        self.map_answers.remove(0)
                    };
                    *registers = TdcallRegisters {
                        r10,
                        r11,
                        ..Default::default()
                    };
                }
                leaf::MEM_PAGE_ACCEPT => {
                    let (gpa, level) = (registers.rcx & !0xFFF, registers.rcx & 0xFFF);
                    let rax = if level == 1 && self.small_pages {
                        0xC000_0B0B_0000_0000
                    } else {
                        self.accept_status
                    };
                    if rax == 0 {
                        self.accepted
                            .push((gpa, if level == 1 { 0x20_0000 } else { PAGE }));
                    }
                    *registers = TdcallRegisters {
                        rax,
                        ..Default::default()
                    };
                }
                other => panic!("unexpected leaf {other}"),
            }
        }
    }

    #[test]
    fn sharing_asks_for_the_shared_alias() {
        let mut td = Simulated::default();
        assert_eq!(to_shared(&mut td, 0x40_0000, 0x40_0000, SHARED), Ok(()));
        assert_eq!(td.map_requests, [(SHARED | 0x40_0000, 0x40_0000)]);
        assert!(td.accepted.is_empty(), "shared pages are not accepted");
    }

    #[test]
    fn retries_resume_where_the_host_says_and_stalls_are_bounded() {
        let start = SHARED | 0x10_0000;
        let mut td = Simulated {
            map_answers: alloc::vec![
                (1, start + 0x3000),
                (1, start + 0x3000),
                (1, start + 0x8000)
            ],
            ..Default::default()
        };
        assert_eq!(to_shared(&mut td, 0x10_0000, 0x10000, SHARED), Ok(()));
        assert_eq!(
            td.map_requests,
            [
                (start, 0x10000),
                (start + 0x3000, 0xD000),
                (start + 0x3000, 0xD000),
                (start + 0x8000, 0x8000)
            ]
        );
        // The same address over and over: three retries are tolerated, the fourth is not.
        let mut stuck = Simulated {
            map_answers: alloc::vec![(1, start); 10],
            ..Default::default()
        };
        assert_eq!(
            to_shared(&mut stuck, 0x10_0000, 0x10000, SHARED),
            Err(ConvertError::Stalled { at: start })
        );
        assert_eq!(stuck.map_requests.len(), 4);
        // A resume address outside the request (backwards, past the end, unaligned).
        for resume in [start - 0x1000, start + 0x10000, start + 0x1800] {
            let mut lying = Simulated {
                map_answers: alloc::vec![(1, start + 0x2000), (1, resume)],
                ..Default::default()
            };
            assert!(matches!(
                to_shared(&mut lying, 0x10_0000, 0x10000, SHARED),
                Err(ConvertError::MapGpa(TdvmcallError::BadArgument(_)))
            ));
        }
        let mut refused = Simulated {
            map_answers: alloc::vec![(0x8000_0000_0000_0000, 0)],
            ..Default::default()
        };
        assert_eq!(
            to_shared(&mut refused, 0x10_0000, 0x1000, SHARED),
            Err(ConvertError::MapGpa(TdvmcallError::Status(
                0x8000_0000_0000_0000
            )))
        );
    }

    #[test]
    fn taking_pages_back_accepts_every_page() {
        let mut td = Simulated::default();
        // 4 KiB head, one 2 MiB page, 4 KiB tail.
        assert_eq!(to_private(&mut td, 0x1F_F000, 0x20_2000, SHARED), Ok(()));
        assert_eq!(td.map_requests, [(0x1F_F000, 0x20_2000)]);
        assert_eq!(
            td.accepted,
            [(0x1F_F000, PAGE), (0x20_0000, 0x20_0000), (0x40_0000, PAGE)]
        );
        // The host mapped small pages: 2 MiB is refused, each 4 KiB page is accepted.
        let mut small = Simulated {
            small_pages: true,
            ..Default::default()
        };
        assert_eq!(to_private(&mut small, 0x20_0000, 0x20_0000, SHARED), Ok(()));
        assert_eq!(small.accepted.len(), 512);
        // A page the host never took away is already accepted: refused.
        let mut replayed = Simulated {
            accept_status: 0x0000_0B0A_0000_0000,
            ..Default::default()
        };
        assert_eq!(
            to_private(&mut replayed, 0x5000, 0x1000, SHARED),
            Err(ConvertError::Accept {
                gpa: 0x5000,
                error: TdcallError::AlreadyAccepted
            })
        );
    }

    #[test]
    fn bad_ranges_never_reach_the_host() {
        let mut td = Simulated::default();
        for (start, len) in [
            (0x1000, 0),
            (0x1800, 0x1000),
            (0x1000, 0x800),
            (SHARED, 0x1000),
            (SHARED - 0x1000, 0x2000),
            (!0xFFF, 0x2000),
        ] {
            assert_eq!(
                to_shared(&mut td, start, len, SHARED),
                Err(ConvertError::BadRange { start, len })
            );
            assert_eq!(
                to_private(&mut td, start, len, SHARED),
                Err(ConvertError::BadRange { start, len })
            );
        }
        assert!(td.map_requests.is_empty());
    }
}
