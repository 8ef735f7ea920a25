//! Converting guest pages between private and shared (SEV-SNP Firmware ABI 56860 §8.17,
//! GHCB spec 56421 §4.1.6), in the order the RMP requires:
//!
//! - private → shared: the guest first rescinds its validation (PVALIDATE with validate = 0),
//!   then asks the hypervisor to make the page shared (page-state change);
//! - shared → private: the hypervisor assigns the page to the guest (page-state change), then
//!   the guest validates it (PVALIDATE with validate = 1).
//!
//! Validation works on 2 MiB pages where the range allows it, falling back to 4 KiB pages when
//! the RMP holds the page at the other size (PVALIDATE's size-mismatch result). A PVALIDATE
//! that changes nothing (the page was already in the requested state) is an error: a page the
//! kernel believes private but finds validated twice means the host remapped memory under it.
//!
//! The steps run through [`PageOps`]: the kernel implements it with the PVALIDATE instruction
//! and the GHCB MSR protocol, the tests with a simulated RMP.

use core::fmt;
use ward_attestation::guest::snp::ghcb_msr::{MsrProtocolError, PageState};

/// 4 KiB.
pub const SMALL_PAGE: u64 = 4096;
/// 2 MiB.
pub const LARGE_PAGE: u64 = 2 << 20;

/// The page size PVALIDATE works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Small = 0,
    Large = 1,
}

impl PageSize {
    /// Bytes in a page of this size.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Small => SMALL_PAGE,
            Self::Large => LARGE_PAGE,
        }
    }
}

/// PVALIDATE's outcome (AMD APM vol. 3, PVALIDATE: RAX result code, CF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvalidateError {
    /// Result 1: bad input (address not aligned, not guest memory, ...).
    BadInput,
    /// Result 6: the RMP entry has the other page size.
    SizeMismatch,
    /// CF set: the page was already in the requested state.
    NoUpdate,
    /// Any other result code.
    Other(u32),
}

impl PvalidateError {
    /// Decodes PVALIDATE's RAX and carry flag.
    pub fn check(result: u32, carry: bool) -> Result<(), Self> {
        match result {
            0 if carry => Err(Self::NoUpdate),
            0 => Ok(()),
            1 => Err(Self::BadInput),
            6 => Err(Self::SizeMismatch),
            other => Err(Self::Other(other)),
        }
    }
}

/// Why a conversion failed. Any failure leaves the range in an unknown state; callers stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStateError {
    /// PVALIDATE failed at `address`.
    Pvalidate {
        address: u64,
        size: PageSize,
        error: PvalidateError,
    },
    /// The hypervisor refused or garbled the page-state change of `gfn`.
    Hypervisor { gfn: u64, error: MsrProtocolError },
}

impl fmt::Display for PageStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pvalidate {
                address,
                size,
                error,
            } => write!(
                f,
                "PVALIDATE of the {} page at {address:#x} failed: {error:?}",
                match size {
                    PageSize::Small => "4 KiB",
                    PageSize::Large => "2 MiB",
                }
            ),
            Self::Hypervisor { gfn, error } => {
                write!(f, "page-state change of frame {gfn:#x}: {error}")
            }
        }
    }
}

/// The two hardware steps of a conversion.
pub trait PageOps {
    /// PVALIDATE of the page at physical `address` (identity-mapped), `validate` or rescind.
    fn pvalidate(
        &mut self,
        address: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError>;
    /// The hypervisor's page-state change of one 4 KiB frame.
    fn change_state(&mut self, gfn: u64, state: PageState) -> Result<(), MsrProtocolError>;
}

/// The validation step over `[start, end)` (whole 4 KiB pages): 2 MiB pages where aligned,
/// 4 KiB pages otherwise and where the RMP says the page is small.
fn pvalidate_range(
    ops: &mut impl PageOps,
    start: u64,
    end: u64,
    validate: bool,
) -> Result<(), PageStateError> {
    let mut address = start;
    while address < end {
        let large = address.is_multiple_of(LARGE_PAGE) && end - address >= LARGE_PAGE;
        if large {
            match ops.pvalidate(address, PageSize::Large, validate) {
                Ok(()) => {
                    address += LARGE_PAGE;
                    continue;
                }
                Err(PvalidateError::SizeMismatch) => {
                    for page in (address..address + LARGE_PAGE).step_by(SMALL_PAGE as usize) {
                        small(ops, page, validate)?;
                    }
                    address += LARGE_PAGE;
                    continue;
                }
                Err(error) => {
                    return Err(PageStateError::Pvalidate {
                        address,
                        size: PageSize::Large,
                        error,
                    });
                }
            }
        }
        small(ops, address, validate)?;
        address += SMALL_PAGE;
    }
    Ok(())
}

fn small(ops: &mut impl PageOps, address: u64, validate: bool) -> Result<(), PageStateError> {
    ops.pvalidate(address, PageSize::Small, validate)
        .map_err(|error| PageStateError::Pvalidate {
            address,
            size: PageSize::Small,
            error,
        })
}

fn change_range(
    ops: &mut impl PageOps,
    start: u64,
    end: u64,
    state: PageState,
) -> Result<(), PageStateError> {
    for address in (start..end).step_by(SMALL_PAGE as usize) {
        let gfn = address / SMALL_PAGE;
        ops.change_state(gfn, state)
            .map_err(|error| PageStateError::Hypervisor { gfn, error })?;
    }
    Ok(())
}

/// Makes `[start, end)` (page aligned) shared: rescind, then page-state change.
pub fn make_shared(ops: &mut impl PageOps, start: u64, end: u64) -> Result<(), PageStateError> {
    pvalidate_range(ops, start, end, false)?;
    change_range(ops, start, end, PageState::Shared)
}

/// Makes `[start, end)` (page aligned) private: page-state change, then validate.
pub fn make_private(ops: &mut impl PageOps, start: u64, end: u64) -> Result<(), PageStateError> {
    change_range(ops, start, end, PageState::Private)?;
    pvalidate_range(ops, start, end, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    /// An RMP as the hardware keeps it: per 4 KiB frame, whether it is assigned to the guest
    /// (private), whether it is validated, and whether its entry is part of a 2 MiB entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Entry {
        private: bool,
        validated: bool,
        large: bool,
    }

    struct Rmp {
        entries: BTreeMap<u64, Entry>,
        log: Vec<&'static str>,
    }

    impl Rmp {
        /// `frames` frames from 0, private and validated, in 2 MiB entries where `large`.
        fn new(frames: u64, large: bool) -> Self {
            let entry = Entry {
                private: true,
                validated: true,
                large,
            };
            Self {
                entries: (0..frames).map(|gfn| (gfn, entry)).collect(),
                log: Vec::new(),
            }
        }
    }

    impl PageOps for Rmp {
        fn pvalidate(
            &mut self,
            address: u64,
            size: PageSize,
            validate: bool,
        ) -> Result<(), PvalidateError> {
            self.log.push(if validate { "validate" } else { "rescind" });
            if !address.is_multiple_of(size.bytes()) {
                return Err(PvalidateError::BadInput);
            }
            let first = address / SMALL_PAGE;
            let frames = size.bytes() / SMALL_PAGE;
            let mut changed = false;
            for gfn in first..first + frames {
                let entry = self.entries.get_mut(&gfn).ok_or(PvalidateError::BadInput)?;
                if !entry.private {
                    return Err(PvalidateError::BadInput);
                }
                if entry.large != (size == PageSize::Large) {
                    return Err(PvalidateError::SizeMismatch);
                }
                changed |= entry.validated != validate;
                entry.validated = validate;
            }
            if changed {
                Ok(())
            } else {
                Err(PvalidateError::NoUpdate)
            }
        }

        fn change_state(&mut self, gfn: u64, state: PageState) -> Result<(), MsrProtocolError> {
            self.log.push("psc");
            // The hypervisor splits a 2 MiB entry (PSMASH) before changing one frame of it.
            let base = gfn & !511;
            if self.entries.get(&gfn).is_some_and(|e| e.large) {
                for g in base..base + 512 {
                    if let Some(e) = self.entries.get_mut(&g) {
                        e.large = false;
                    }
                }
            }
            let entry = self
                .entries
                .get_mut(&gfn)
                .ok_or(MsrProtocolError::PageStateRefused { code: 1 })?;
            // Becoming private clears validation; a shared page has none.
            *entry = Entry {
                private: state == PageState::Private,
                validated: false,
                large: false,
            };
            Ok(())
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn large_aligned_range_round_trip() {
        let mut rmp = Rmp::new(2048, true);
        make_shared(&mut rmp, 2 * MIB, 6 * MIB).unwrap();
        assert_eq!(rmp.log.iter().filter(|s| **s == "rescind").count(), 2);
        assert_eq!(rmp.log.iter().filter(|s| **s == "psc").count(), 1024);
        let rescinds_first = rmp.log.iter().position(|s| *s == "psc").unwrap();
        assert!(rmp.log[..rescinds_first].iter().all(|s| *s == "rescind"));
        for gfn in 512..1536 {
            assert!(!rmp.entries[&gfn].private && !rmp.entries[&gfn].validated);
        }
        assert!(rmp.entries[&511].private && rmp.entries[&511].validated);
        assert!(rmp.entries[&1536].validated);

        rmp.log.clear();
        make_private(&mut rmp, 2 * MIB, 6 * MIB).unwrap();
        // The frames came back as 4 KiB entries: each 2 MiB attempt falls back.
        assert_eq!(
            rmp.log.iter().filter(|s| **s == "validate").count(),
            2 + 1024
        );
        for gfn in 512..1536 {
            assert!(rmp.entries[&gfn].private && rmp.entries[&gfn].validated);
        }
    }

    #[test]
    fn small_entries_and_unaligned_ends_use_4k() {
        let mut rmp = Rmp::new(1024, false);
        make_shared(&mut rmp, 0x1000, 2 * MIB + 0x3000).unwrap();
        // 511 small pages up to the 2 MiB boundary, then 3 more: the rest of the range is
        // shorter than a large page.
        assert_eq!(rmp.log.iter().filter(|s| **s == "rescind").count(), 511 + 3);
        assert!(rmp.entries[&0].validated);
        assert!(!rmp.entries[&1].private);
        assert!(!rmp.entries[&514].private);
        assert!(rmp.entries[&515].private);
    }

    #[test]
    fn double_validation_and_refusals_stop_the_conversion() {
        // Rescinding a page that is not validated: the kernel's view of its memory is wrong
        // (the host could have swapped the page), so the conversion stops.
        let mut rmp = Rmp::new(16, false);
        rmp.entries.get_mut(&1).unwrap().validated = false;
        assert_eq!(
            make_shared(&mut rmp, 0, 0x2000),
            Err(PageStateError::Pvalidate {
                address: 0x1000,
                size: PageSize::Small,
                error: PvalidateError::NoUpdate
            })
        );
        // The hypervisor refusing the change.
        let mut rmp = Rmp::new(16, false);
        assert_eq!(
            make_private(&mut rmp, 0xF000, 0x11000),
            Err(PageStateError::Hypervisor {
                gfn: 0x10,
                error: MsrProtocolError::PageStateRefused { code: 1 }
            })
        );
        let mut rmp = Rmp::new(16, false);
        assert_eq!(
            make_shared(&mut rmp, 0x10000, 0x12000),
            Err(PageStateError::Pvalidate {
                address: 0x10000,
                size: PageSize::Small,
                error: PvalidateError::BadInput
            })
        );
    }

    #[test]
    fn pvalidate_results_decode() {
        assert_eq!(PvalidateError::check(0, false), Ok(()));
        assert_eq!(
            PvalidateError::check(0, true),
            Err(PvalidateError::NoUpdate)
        );
        assert_eq!(
            PvalidateError::check(6, false),
            Err(PvalidateError::SizeMismatch)
        );
        assert_eq!(
            PvalidateError::check(1, false),
            Err(PvalidateError::BadInput)
        );
        assert_eq!(
            PvalidateError::check(9, false),
            Err(PvalidateError::Other(9))
        );
    }
}
