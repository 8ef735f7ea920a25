//! SEV-SNP: which memory the launch validated, read back from the image's own "ASEV" metadata
//! (OVMF's `OvmfSevMetadata.asm` format, written by `ward build`), and the walk that validates
//! the rest of RAM.
//!
//! The loader reads the metadata from the image it runs from rather than from constants: the
//! image is what the launch digest covers, so the ranges the hypervisor was told to pre-validate
//! are exactly these. Validating one of them again would fail with "already validated" — which
//! [`crate::acceptance`] rightly treats as an attack — so they are skipped; everything else that
//! e820 calls RAM is validated.

use crate::acceptance::{self, AcceptError, AcceptOutcome, AcceptStats, PageSize};
use crate::image_format::{GuidTable, SEV_METADATA_OFFSET_GUID, TableError};
use crate::memory::E820Entry;
use core::fmt;
use core::ops::Range;

/// Most ASEV sections looked at (Ward's image has four; OVMF has about ten).
pub const MAX_SECTIONS: usize = 16;
/// ASEV section types the launch validates (SNP_SEC_MEM, SNP_SECRETS, CPUID).
const VALIDATED_KINDS: [u32; 3] = [1, 2, 3];
const HEADER_SIZE: usize = 16;
const SECTION_SIZE: usize = 12;
const E820_RAM: u32 = 1;

/// Why the ASEV metadata could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataError {
    /// The GUID table is malformed.
    Table(TableError),
    /// The image has no SEV metadata entry (not built for SNP).
    Missing,
    /// The metadata offset or header is out of bounds or not "ASEV" version 1.
    BadHeader,
    /// More sections than [`MAX_SECTIONS`].
    TooManySections(u32),
    /// A section of a type Ward does not know (it cannot tell whether it is validated).
    UnknownSection { kind: u32, base: u32 },
    /// A section that is empty, not page aligned or wraps around 4 GiB.
    BadSection { base: u32, size: u32 },
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(e) => write!(f, "GUID table: {e}"),
            Self::Missing => write!(f, "the image has no SEV metadata"),
            Self::BadHeader => write!(f, "SEV metadata header is malformed"),
            Self::TooManySections(n) => {
                write!(f, "SEV metadata has {n} sections (max {MAX_SECTIONS})")
            }
            Self::UnknownSection { kind, base } => {
                write!(
                    f,
                    "SEV metadata section of unknown type {kind} at {base:#x}"
                )
            }
            Self::BadSection { base, size } => {
                write!(f, "SEV metadata section {base:#x}+{size:#x} is malformed")
            }
        }
    }
}

impl From<TableError> for MetadataError {
    fn from(error: TableError) -> Self {
        Self::Table(error)
    }
}

/// The ranges the launch validated, as listed by the image's ASEV metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prevalidated {
    ranges: [Range<u64>; MAX_SECTIONS],
    count: usize,
}

impl Prevalidated {
    /// The ranges, in metadata order.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges[..self.count]
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads the ASEV metadata from `tail`, the last bytes of the image (ending where it ends).
pub fn from_image_tail(tail: &[u8]) -> Result<Prevalidated, MetadataError> {
    let entry = GuidTable::parse(tail)?
        .find(SEV_METADATA_OFFSET_GUID)?
        .ok_or(MetadataError::Missing)?;
    if entry.len() < 4 {
        return Err(MetadataError::BadHeader);
    }
    // The entry holds the metadata's distance from the end of the image.
    let from_end = u32_at(entry, 0) as usize;
    let start = tail
        .len()
        .checked_sub(from_end)
        .filter(|&start| start + HEADER_SIZE <= tail.len())
        .ok_or(MetadataError::BadHeader)?;
    let metadata = &tail[start..];
    if &metadata[0..4] != b"ASEV" || u32_at(metadata, 8) != 1 {
        return Err(MetadataError::BadHeader);
    }
    let length = u32_at(metadata, 4) as usize;
    let count = u32_at(metadata, 12);
    if count as usize > MAX_SECTIONS {
        return Err(MetadataError::TooManySections(count));
    }
    if length != HEADER_SIZE + SECTION_SIZE * count as usize || length > metadata.len() {
        return Err(MetadataError::BadHeader);
    }
    let mut result = Prevalidated {
        ranges: core::array::from_fn(|_| 0..0),
        count: 0,
    };
    for section in metadata[HEADER_SIZE..length].chunks_exact(SECTION_SIZE) {
        let (base, size, kind) = (u32_at(section, 0), u32_at(section, 4), u32_at(section, 8));
        if !VALIDATED_KINDS.contains(&kind) {
            return Err(MetadataError::UnknownSection { kind, base });
        }
        let end = u64::from(base) + u64::from(size);
        let aligned = |v: u64| v.is_multiple_of(acceptance::SMALL);
        if size == 0 || !aligned(base.into()) || !aligned(end) || end > 1 << 32 {
            return Err(MetadataError::BadSection { base, size });
        }
        result.ranges[result.count] = u64::from(base)..end;
        result.count += 1;
    }
    Ok(result)
}

/// Validates every page of e820 RAM (shrunk to whole pages) outside `prevalidated` through
/// `validate`, 2 MiB at a time where possible.
pub fn validate_ram(
    e820: impl Iterator<Item = E820Entry>,
    prevalidated: &Prevalidated,
    validate: &mut impl FnMut(u64, PageSize) -> AcceptOutcome,
) -> Result<AcceptStats, AcceptError> {
    let mut stats = AcceptStats::default();
    for entry in e820.filter(|e| e.kind == E820_RAM) {
        let Some(start) = entry.address.checked_next_multiple_of(acceptance::SMALL) else {
            continue;
        };
        let end = entry.address.saturating_add(entry.length) & !(acceptance::SMALL - 1);
        if start < end {
            acceptance::accept_range_except(
                start..end,
                prevalidated.ranges(),
                validate,
                &mut stats,
            )?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_format::{TABLE_END_FROM_IMAGE_END, TABLE_FOOTER_GUID};
    use alloc::collections::BTreeSet;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A 4 KiB image tail with a GUID table holding one SEV metadata offset entry pointing at
    /// `metadata`, placed at the start of the page.
    fn tail_with(metadata: &[u8]) -> Vec<u8> {
        let mut tail = vec![0u8; 4096];
        tail[..metadata.len()].copy_from_slice(metadata);
        let table_end = tail.len() - TABLE_END_FROM_IMAGE_END;
        // Entry: u32 offset from the end, u16 length (4 + 18), GUID; then the footer.
        let mut table = Vec::new();
        table.extend_from_slice(&4096u32.to_le_bytes());
        table.extend_from_slice(&22u16.to_le_bytes());
        table.extend_from_slice(&SEV_METADATA_OFFSET_GUID.0);
        table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&TABLE_FOOTER_GUID.0);
        tail[table_end - table.len()..table_end].copy_from_slice(&table);
        tail
    }

    fn asev(sections: &[(u32, u32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"ASEV");
        out.extend_from_slice(&((16 + 12 * sections.len()) as u32).to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        for &(base, size, kind) in sections {
            for v in [base, size, kind] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Ward's own sections (tools/src/image/metadata.rs).
    const WARD: [(u32, u32, u32); 4] = [
        (0x10_0000, 0x6000, 1),
        (0x10_6000, 0x1000, 2),
        (0x10_7000, 0x1000, 3),
        (0x10_8000, 0xF_8000, 1),
    ];

    #[test]
    fn reads_the_sections_ward_build_writes() {
        let p = from_image_tail(&tail_with(&asev(&WARD))).unwrap();
        assert_eq!(
            p.ranges(),
            &[
                0x10_0000..0x10_6000,
                0x10_6000..0x10_7000,
                0x10_7000..0x10_8000,
                0x10_8000..0x20_0000
            ]
        );
    }

    #[test]
    fn refuses_malformed_metadata() {
        let mut bad_signature = asev(&WARD);
        bad_signature[0] = b'X';
        let mut bad_length = asev(&WARD);
        bad_length[4] += 1;
        let cases = [
            (tail_with(&bad_signature), MetadataError::BadHeader),
            (tail_with(&bad_length), MetadataError::BadHeader),
            (
                tail_with(&asev(&[(0x10_0000, 0x1000, 0x10)])),
                MetadataError::UnknownSection {
                    kind: 0x10,
                    base: 0x10_0000,
                },
            ),
            (
                tail_with(&asev(&[(0x10_0800, 0x1000, 1)])),
                MetadataError::BadSection {
                    base: 0x10_0800,
                    size: 0x1000,
                },
            ),
            (
                tail_with(&asev(&[(0xFFFF_F000, 0x2000, 1)])),
                MetadataError::BadSection {
                    base: 0xFFFF_F000,
                    size: 0x2000,
                },
            ),
            (
                tail_with(&asev(&[(0x10_0000, 0, 1)])),
                MetadataError::BadSection {
                    base: 0x10_0000,
                    size: 0,
                },
            ),
            (
                tail_with(&asev(&[(0x10_0000, 0x1000, 1); 17])),
                MetadataError::TooManySections(17),
            ),
        ];
        for (tail, error) in cases {
            assert_eq!(from_image_tail(&tail), Err(error));
        }
        assert_eq!(
            from_image_tail(&[0u8; 4096]),
            Err(MetadataError::Table(TableError::NoFooter))
        );
    }

    /// Plays the RMP: which 4 KiB pages are validated; refuses a second validation, and a
    /// 2 MiB validation over host-side 4 KiB backing in `small_backed`.
    struct Rmp {
        validated: BTreeSet<u64>,
        small_backed: Range<u64>,
    }

    impl Rmp {
        fn pvalidate(&mut self, address: u64, size: PageSize) -> AcceptOutcome {
            let pages = (address..address + size.bytes()).step_by(acceptance::SMALL as usize);
            if size == PageSize::Large
                && self.small_backed.start < address + size.bytes()
                && address < self.small_backed.end
            {
                return AcceptOutcome::SizeMismatch;
            }
            if pages.clone().any(|p| self.validated.contains(&p)) {
                return AcceptOutcome::AlreadyAccepted;
            }
            self.validated.extend(pages);
            AcceptOutcome::Accepted
        }
    }

    fn ram(address: u64, length: u64) -> E820Entry {
        E820Entry {
            address,
            length,
            kind: E820_RAM,
        }
    }

    #[test]
    fn validates_all_ram_but_what_the_launch_validated() {
        let prevalidated = from_image_tail(&tail_with(&asev(&WARD))).unwrap();
        // The launch validated the loader area.
        let mut rmp = Rmp {
            validated: (0x10_0000..0x20_0000).step_by(0x1000).collect(),
            small_backed: 0x60_0000..0x60_1000,
        };
        let e820 = [
            ram(0, 0x9_FC00),
            E820Entry {
                address: 0x9_FC00,
                length: 0x400,
                kind: 2,
            },
            ram(0x10_0000, 0xFF0_0000),
        ];
        let stats = validate_ram(e820.iter().copied(), &prevalidated, &mut |a, s| {
            rmp.pvalidate(a, s)
        })
        .unwrap();
        // Low RAM up to the partial page, then [2 MiB, 256 MiB): everything exactly once.
        assert_eq!(stats.bytes(), 0x9_F000 + (0x1000_0000 - 0x20_0000));
        assert_eq!(
            rmp.validated.len() as u64 * 0x1000,
            stats.bytes() + 0x10_0000
        );
        assert!(!rmp.validated.contains(&0x9_F000));
        // 2 MiB pages except where the host backs with 4 KiB pages.
        assert_eq!(stats.small, 0x9F + 512);
        // A host that maps one private page at two addresses makes PVALIDATE report "already
        // validated": the walk stops there.
        let mut fresh = Rmp {
            validated: BTreeSet::new(),
            small_backed: 0..0,
        };
        let mut replay = |a, s| {
            if a == 0x40_0000 {
                AcceptOutcome::AlreadyAccepted
            } else {
                fresh.pvalidate(a, s)
            }
        };
        assert_eq!(
            validate_ram(e820.iter().copied(), &prevalidated, &mut replay),
            Err(AcceptError::AlreadyAccepted { address: 0x40_0000 })
        );
    }
}
