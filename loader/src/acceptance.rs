//! Accepting private memory before first use: SEV-SNP `PVALIDATE` and TDX
//! `TDG.MEM.PAGE.ACCEPT` both take one 4 KiB or 2 MiB page at a time, and both refuse a 2 MiB
//! request when the host backed the range with small pages. This module plans and drives that
//! walk over a range — large pages where alignment allows, a 4 KiB fall-back for a refused large
//! page and for the unaligned ends — while the firmware supplies the instruction itself.
//!
//! A page that was *already* accepted is an error, never skipped: under SNP it means the host
//! mapped one private page at two guest addresses (or replayed a validated page), which is how
//! memory-aliasing attacks start; the ranges the launch pre-validated (ASEV `SNP_SEC_MEM`, the
//! TDVF `TempMem`, the image itself) are excluded by the caller instead.

use core::fmt;
use core::ops::Range;

/// 4 KiB.
pub const SMALL: u64 = 0x1000;
/// 2 MiB.
pub const LARGE: u64 = 0x20_0000;

/// Granularity of one accept operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Small,
    Large,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Small => SMALL,
            Self::Large => LARGE,
        }
    }
}

/// What one accept operation reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted,
    /// The host backs this range with smaller pages: retry as 4 KiB pages.
    SizeMismatch,
    /// The page was already accepted/validated.
    AlreadyAccepted,
    /// Any other failure, with the instruction's raw status.
    Failed(u64),
}

/// Why accepting a range failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// The range is not 4 KiB aligned.
    Unaligned { start: u64, end: u64 },
    /// A page was already accepted (see the module comment).
    AlreadyAccepted { address: u64 },
    /// The instruction failed.
    Failed {
        address: u64,
        size: PageSize,
        status: u64,
    },
    /// A 4 KiB page reported a size mismatch, which cannot happen on a real platform.
    SmallSizeMismatch { address: u64 },
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { start, end } => {
                write!(f, "range {start:#x}..{end:#x} is not 4 KiB aligned")
            }
            Self::AlreadyAccepted { address } => write!(
                f,
                "page {address:#x} was already accepted (aliased or replayed private page)"
            ),
            Self::Failed {
                address,
                size,
                status,
            } => {
                write!(
                    f,
                    "accepting {size:?} page {address:#x} failed ({status:#x})"
                )
            }
            Self::SmallSizeMismatch { address } => {
                write!(f, "4 KiB page {address:#x} reported a size mismatch")
            }
        }
    }
}

/// Pages accepted, by size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptStats {
    pub large: u64,
    pub small: u64,
}

impl AcceptStats {
    pub fn bytes(&self) -> u64 {
        self.large * LARGE + self.small * SMALL
    }
}

fn small(
    address: u64,
    accept: &mut impl FnMut(u64, PageSize) -> AcceptOutcome,
    stats: &mut AcceptStats,
) -> Result<(), AcceptError> {
    match accept(address, PageSize::Small) {
        AcceptOutcome::Accepted => {
            stats.small += 1;
            Ok(())
        }
        AcceptOutcome::SizeMismatch => Err(AcceptError::SmallSizeMismatch { address }),
        AcceptOutcome::AlreadyAccepted => Err(AcceptError::AlreadyAccepted { address }),
        AcceptOutcome::Failed(status) => Err(AcceptError::Failed {
            address,
            size: PageSize::Small,
            status,
        }),
    }
}

/// Accepts every page of `range` through `accept`, 2 MiB at a time where aligned.
pub fn accept_range(
    range: Range<u64>,
    accept: &mut impl FnMut(u64, PageSize) -> AcceptOutcome,
    stats: &mut AcceptStats,
) -> Result<(), AcceptError> {
    if !range.start.is_multiple_of(SMALL) || !range.end.is_multiple_of(SMALL) {
        return Err(AcceptError::Unaligned {
            start: range.start,
            end: range.end,
        });
    }
    let mut cursor = range.start;
    while cursor < range.end {
        let large_fits = cursor.is_multiple_of(LARGE)
            && cursor
                .checked_add(LARGE)
                .is_some_and(|end| end <= range.end);
        if !large_fits {
            small(cursor, accept, stats)?;
            cursor += SMALL;
            continue;
        }
        match accept(cursor, PageSize::Large) {
            AcceptOutcome::Accepted => stats.large += 1,
            AcceptOutcome::SizeMismatch => {
                for page in (cursor..cursor + LARGE).step_by(SMALL as usize) {
                    small(page, accept, stats)?;
                }
            }
            AcceptOutcome::AlreadyAccepted => {
                return Err(AcceptError::AlreadyAccepted { address: cursor });
            }
            AcceptOutcome::Failed(status) => {
                return Err(AcceptError::Failed {
                    address: cursor,
                    size: PageSize::Large,
                    status,
                });
            }
        }
        cursor += LARGE;
    }
    Ok(())
}

/// Accepts `range` minus the ranges in `skip` (pre-accepted at launch; they may overlap each
/// other or lie partly outside `range`).
pub fn accept_range_except(
    range: Range<u64>,
    skip: &[Range<u64>],
    accept: &mut impl FnMut(u64, PageSize) -> AcceptOutcome,
    stats: &mut AcceptStats,
) -> Result<(), AcceptError> {
    let mut cursor = range.start;
    while cursor < range.end {
        // Skip whatever covers the cursor, then run to the next skipped range's start.
        if let Some(covering) = skip.iter().find(|s| s.start <= cursor && cursor < s.end) {
            cursor = covering.end;
            continue;
        }
        let next_skip = skip
            .iter()
            .filter(|s| s.start > cursor && s.start < range.end)
            .map(|s| s.start)
            .min()
            .unwrap_or(range.end);
        accept_range(cursor..next_skip, accept, stats)?;
        cursor = next_skip;
    }
    Ok(())
}

/// SEV-SNP `PVALIDATE` result: RAX (0 success, 1 FAIL_INPUT, 6 FAIL_SIZEMISMATCH) and RFLAGS.CF
/// (set when the RMP entry already had the requested validation state).
pub fn pvalidate_outcome(rax: u64, carry: bool) -> AcceptOutcome {
    match (rax, carry) {
        (0, false) => AcceptOutcome::Accepted,
        (0, true) => AcceptOutcome::AlreadyAccepted,
        (6, _) => AcceptOutcome::SizeMismatch,
        (status, _) => AcceptOutcome::Failed(status),
    }
}

/// TDX `TDG.MEM.PAGE.ACCEPT` result from RAX (TDX Module ABI completion status: the class in
/// bits 63:32; the low half names the operand).
pub fn tdx_accept_outcome(rax: u64) -> AcceptOutcome {
    match rax >> 32 {
        0 if rax == 0 => AcceptOutcome::Accepted,
        0xC000_0B0B => AcceptOutcome::SizeMismatch,
        0x0000_0B0A => AcceptOutcome::AlreadyAccepted,
        _ => AcceptOutcome::Failed(rax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A platform whose host backs `small_backed` with 4 KiB pages; records every operation.
    struct Platform {
        small_backed: Range<u64>,
        accepted: Vec<(u64, u64)>,
        log: Vec<(u64, PageSize)>,
    }

    impl Platform {
        fn new(small_backed: Range<u64>) -> Self {
            Self {
                small_backed,
                accepted: Vec::new(),
                log: Vec::new(),
            }
        }

        fn accept(&mut self, address: u64, size: PageSize) -> AcceptOutcome {
            self.log.push((address, size));
            let end = address + size.bytes();
            if size == PageSize::Large
                && address < self.small_backed.end
                && self.small_backed.start < end
            {
                return AcceptOutcome::SizeMismatch;
            }
            if self.accepted.iter().any(|&(s, e)| s < end && address < e) {
                return AcceptOutcome::AlreadyAccepted;
            }
            self.accepted.push((address, end));
            AcceptOutcome::Accepted
        }

        fn covered(&self) -> u64 {
            self.accepted.iter().map(|(s, e)| e - s).sum()
        }
    }

    #[test]
    fn large_pages_where_aligned_small_at_the_ends() {
        let mut p = Platform::new(0..0);
        let mut stats = AcceptStats::default();
        accept_range(0x1F_F000..0x60_1000, &mut |a, s| p.accept(a, s), &mut stats).unwrap();
        // One 4 KiB page up to 2 MiB, two 2 MiB pages, one 4 KiB page at the end.
        assert_eq!(stats, AcceptStats { large: 2, small: 2 });
        assert_eq!(stats.bytes(), 0x60_1000 - 0x1F_F000);
        assert_eq!(p.covered(), stats.bytes());
        assert_eq!(p.log[1], (0x20_0000, PageSize::Large));
    }

    #[test]
    fn size_mismatch_falls_back_to_small_pages() {
        let mut p = Platform::new(0x40_0000..0x40_1000);
        let mut stats = AcceptStats::default();
        accept_range(0x20_0000..0x80_0000, &mut |a, s| p.accept(a, s), &mut stats).unwrap();
        assert_eq!(
            stats,
            AcceptStats {
                large: 2,
                small: 512
            }
        );
        assert_eq!(p.covered(), 0x60_0000);
        assert!(p.log.contains(&(0x40_0000, PageSize::Large)));
        assert!(p.log.contains(&(0x5F_F000, PageSize::Small)));
    }

    #[test]
    fn already_accepted_and_failures_stop_the_walk() {
        let mut p = Platform::new(0..0);
        let mut stats = AcceptStats::default();
        accept_range(0x20_0000..0x40_0000, &mut |a, s| p.accept(a, s), &mut stats).unwrap();
        assert_eq!(
            accept_range(0x3F_F000..0x40_1000, &mut |a, s| p.accept(a, s), &mut stats),
            Err(AcceptError::AlreadyAccepted { address: 0x3F_F000 })
        );
        let mut failing = |_, _| AcceptOutcome::Failed(1);
        assert_eq!(
            accept_range(0..LARGE, &mut failing, &mut stats),
            Err(AcceptError::Failed {
                address: 0,
                size: PageSize::Large,
                status: 1
            })
        );
        let mut lying = |_, _| AcceptOutcome::SizeMismatch;
        assert_eq!(
            accept_range(0..LARGE, &mut lying, &mut stats),
            Err(AcceptError::SmallSizeMismatch { address: 0 })
        );
        assert_eq!(
            accept_range(0x800..0x2000, &mut failing, &mut stats),
            Err(AcceptError::Unaligned {
                start: 0x800,
                end: 0x2000
            })
        );
    }

    #[test]
    fn pre_accepted_ranges_are_skipped() {
        let mut p = Platform::new(0..0);
        let mut stats = AcceptStats::default();
        // RAM 0..8 MiB; the loader area [1 MiB, 2 MiB) and a range straddling 6 MiB were
        // accepted at launch (the second given twice, overlapping).
        let skip = [
            0x10_0000..0x20_0000,
            0x5F_0000..0x61_0000,
            0x60_0000..0x60_8000,
        ];
        accept_range_except(0..0x80_0000, &skip, &mut |a, s| p.accept(a, s), &mut stats).unwrap();
        assert_eq!(p.covered(), 0x80_0000 - 0x10_0000 - 0x2_0000);
        for s in &skip {
            assert!(!p.accepted.iter().any(|&(a, e)| a < s.end && s.start < e));
        }
        // Skips outside the range change nothing.
        let mut q = Platform::new(0..0);
        let mut stats = AcceptStats::default();
        let outside = [0x100_0000..0x200_0000, 0x300_0000..0x400_0000];
        accept_range_except(0..LARGE, &outside, &mut |a, s| q.accept(a, s), &mut stats).unwrap();
        assert_eq!(stats, AcceptStats { large: 1, small: 0 });
    }

    #[test]
    fn instruction_results() {
        assert_eq!(pvalidate_outcome(0, false), AcceptOutcome::Accepted);
        assert_eq!(pvalidate_outcome(0, true), AcceptOutcome::AlreadyAccepted);
        assert_eq!(pvalidate_outcome(6, false), AcceptOutcome::SizeMismatch);
        assert_eq!(pvalidate_outcome(1, false), AcceptOutcome::Failed(1));
        assert_eq!(tdx_accept_outcome(0), AcceptOutcome::Accepted);
        assert_eq!(
            tdx_accept_outcome(0xC000_0B0B_0000_0001),
            AcceptOutcome::SizeMismatch
        );
        assert_eq!(
            tdx_accept_outcome(0x0000_0B0A_0000_0000),
            AcceptOutcome::AlreadyAccepted
        );
        assert_eq!(
            tdx_accept_outcome(0x8000_0000_0000_0000),
            AcceptOutcome::Failed(0x8000_0000_0000_0000)
        );
        assert_eq!(tdx_accept_outcome(7), AcceptOutcome::Failed(7));
    }
}
