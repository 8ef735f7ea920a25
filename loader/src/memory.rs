//! The physical memory map: QEMU's `etc/e820` parsed, normalised and annotated with what the
//! loader placed where.
//!
//! e820 comes from the host and is untrusted: entries may overlap, be unsorted, unaligned, empty
//! or wrap around. The result is sorted and non-overlapping; where two claims overlap the more
//! restrictive kind wins; usable RAM is shrunk to whole pages; the legacy hole below 1 MiB and
//! the zero page are never usable.

use crate::layout::{LEGACY_HOLE_END, LEGACY_HOLE_START, PAGE_SIZE};
use core::fmt;
use ward_bootinfo::{MAX_MEMORY_REGIONS, MemoryKind, MemoryMap, MemoryRegion};

/// Size of one `etc/e820` entry: `u64 address, u64 length, u32 type`.
pub const E820_ENTRY_SIZE: usize = 20;
/// Most e820 entries accepted.
pub const MAX_E820_ENTRIES: usize = 128;
/// Most claims (e820 entries plus the loader's own marks) the builder holds.
const MAX_CLAIMS: usize = MAX_E820_ENTRIES + 16;

/// e820 type of ordinary RAM.
const E820_RAM: u32 = 1;
const E820_ACPI: u32 = 3;
const E820_NVS: u32 = 4;

/// Why the memory map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The e820 blob's length is not a whole number of entries, or there are too many.
    BadE820Length(usize),
    /// An e820 entry wraps around the address space.
    E820Overflow { index: usize },
    /// More claims than the builder holds.
    TooManyClaims,
    /// The normalised map has more regions than BootInfo can carry.
    TooManyRegions(usize),
    /// A range the loader must use is not usable RAM.
    NotUsable { start: u64, end: u64 },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadE820Length(n) => write!(
                f,
                "etc/e820 has {n} bytes: not a whole number of 20-byte entries, or over {MAX_E820_ENTRIES}"
            ),
            Self::E820Overflow { index } => write!(f, "e820 entry {index} wraps around"),
            Self::TooManyClaims => write!(f, "too many memory ranges to track"),
            Self::TooManyRegions(n) => {
                write!(
                    f,
                    "memory map needs {n} regions, BootInfo holds {MAX_MEMORY_REGIONS}"
                )
            }
            Self::NotUsable { start, end } => {
                write!(
                    f,
                    "[{start:#x}, {end:#x}) is not usable RAM in the e820 map"
                )
            }
        }
    }
}

/// One e820 entry as QEMU reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub address: u64,
    /// Length in bytes.
    pub length: u64,
    /// e820 type (1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable, ...).
    pub kind: u32,
}

/// Parses the raw `etc/e820` fw_cfg file.
pub fn parse_e820(bytes: &[u8]) -> Result<impl Iterator<Item = E820Entry> + '_, MemoryError> {
    if !bytes.len().is_multiple_of(E820_ENTRY_SIZE)
        || bytes.len() / E820_ENTRY_SIZE > MAX_E820_ENTRIES
    {
        return Err(MemoryError::BadE820Length(bytes.len()));
    }
    Ok(bytes.chunks_exact(E820_ENTRY_SIZE).map(|raw| {
        let mut address = [0u8; 8];
        let mut length = [0u8; 8];
        let mut kind = [0u8; 4];
        address.copy_from_slice(&raw[0..8]);
        length.copy_from_slice(&raw[8..16]);
        kind.copy_from_slice(&raw[16..20]);
        E820Entry {
            address: u64::from_le_bytes(address),
            length: u64::from_le_bytes(length),
            kind: u32::from_le_bytes(kind),
        }
    }))
}

/// Precedence when claims overlap: higher wins. Loader-placed memory outranks the firmware's view
/// only because the loader checks that it places things in usable RAM first.
fn rank(kind: MemoryKind) -> u8 {
    match kind {
        MemoryKind::Usable => 0,
        MemoryKind::AcpiReclaimable => 1,
        MemoryKind::AcpiNvs => 2,
        MemoryKind::Reserved => 3,
        MemoryKind::Loader => 4,
        MemoryKind::KernelImage => 5,
    }
}

fn kind_from_e820(kind: u32) -> MemoryKind {
    match kind {
        E820_RAM => MemoryKind::Usable,
        E820_ACPI => MemoryKind::AcpiReclaimable,
        E820_NVS => MemoryKind::AcpiNvs,
        _ => MemoryKind::Reserved,
    }
}

#[derive(Clone, Copy, Debug)]
struct Claim {
    start: u64,
    end: u64,
    kind: MemoryKind,
}

/// Collects claims on physical memory and resolves them into a [`MemoryMap`].
pub struct MemoryMapBuilder {
    claims: [Claim; MAX_CLAIMS],
    count: usize,
}

impl MemoryMapBuilder {
    /// A builder seeded with the e820 map, the zero page and the legacy hole marked reserved.
    pub fn from_e820(e820: impl Iterator<Item = E820Entry>) -> Result<Self, MemoryError> {
        let mut builder = Self {
            claims: [Claim {
                start: 0,
                end: 0,
                kind: MemoryKind::Reserved,
            }; MAX_CLAIMS],
            count: 0,
        };
        for (index, entry) in e820.enumerate() {
            let end = entry
                .address
                .checked_add(entry.length)
                .ok_or(MemoryError::E820Overflow { index })?;
            builder.claim(entry.address, end, kind_from_e820(entry.kind))?;
        }
        builder.claim(0, PAGE_SIZE, MemoryKind::Reserved)?;
        builder.claim(LEGACY_HOLE_START, LEGACY_HOLE_END, MemoryKind::Reserved)?;
        Ok(builder)
    }

    /// Records that `[start, end)` holds `kind`. Usable RAM counts only in whole pages, so a
    /// usable claim is shrunk to the pages it covers completely.
    pub fn claim(&mut self, start: u64, end: u64, kind: MemoryKind) -> Result<(), MemoryError> {
        let (start, end) = if kind == MemoryKind::Usable {
            match start.checked_next_multiple_of(PAGE_SIZE) {
                Some(aligned) => (aligned, end & !(PAGE_SIZE - 1)),
                None => return Ok(()),
            }
        } else {
            (start, end)
        };
        if start >= end {
            return Ok(());
        }
        if self.count == MAX_CLAIMS {
            return Err(MemoryError::TooManyClaims);
        }
        self.claims[self.count] = Claim { start, end, kind };
        self.count += 1;
        Ok(())
    }

    /// Marks `[start, end)`, which must be usable RAM now, as used for `kind`.
    pub fn mark_used(&mut self, start: u64, end: u64, kind: MemoryKind) -> Result<(), MemoryError> {
        if !is_usable(&self.build()?, start, end) {
            return Err(MemoryError::NotUsable { start, end });
        }
        self.claim(start, end, kind)
    }

    /// Resolves the claims into a sorted, non-overlapping map with adjacent equal kinds merged.
    pub fn build(&self) -> Result<MemoryMap, MemoryError> {
        let claims = &self.claims[..self.count];
        let mut boundaries = [0u64; 2 * MAX_CLAIMS];
        for (i, claim) in claims.iter().enumerate() {
            boundaries[2 * i] = claim.start;
            boundaries[2 * i + 1] = claim.end;
        }
        let boundaries = &mut boundaries[..2 * claims.len()];
        boundaries.sort_unstable();

        let mut map = MemoryMap::empty();
        let mut count = 0usize;
        for pair in boundaries.windows(2) {
            let (start, end) = (pair[0], pair[1]);
            if start == end {
                continue;
            }
            // Elementary intervals lie wholly inside or outside every claim.
            let winner = claims
                .iter()
                .filter(|c| c.start <= start && end <= c.end)
                .map(|c| c.kind)
                .max_by_key(|&k| rank(k));
            let Some(kind) = winner else { continue };
            let (start, end) = if kind == MemoryKind::Usable {
                // A non-usable claim may have cut a page: what is left of it is not usable.
                match start.checked_next_multiple_of(PAGE_SIZE) {
                    Some(aligned) => (aligned, end & !(PAGE_SIZE - 1)),
                    None => continue,
                }
            } else {
                (start, end)
            };
            if start >= end {
                continue;
            }
            if count > 0 {
                let last = &mut map.entries[count - 1];
                if last.kind == kind as u32 && last.start + last.length == start {
                    last.length += end - start;
                    continue;
                }
            }
            if count == MAX_MEMORY_REGIONS {
                return Err(MemoryError::TooManyRegions(count + 1));
            }
            map.entries[count] = MemoryRegion {
                start,
                length: end - start,
                kind: kind as u32,
                reserved: 0,
            };
            count += 1;
        }
        map.count = count as u32;
        Ok(map)
    }
}

/// Whether every byte of `[start, end)` is usable RAM in `map`.
pub fn is_usable(map: &MemoryMap, start: u64, end: u64) -> bool {
    let mut cursor = start;
    for region in map.regions() {
        let region_end = region.start + region.length;
        if region.kind == MemoryKind::Usable as u32 && region.start <= cursor && cursor < region_end
        {
            cursor = region_end;
        }
        if cursor >= end {
            return true;
        }
    }
    start >= end
}

/// One past the highest byte of RAM (usable, ACPI, loader or kernel) in `map`.
pub fn top_of_ram(map: &MemoryMap) -> u64 {
    map.regions()
        .iter()
        .filter(|r| r.kind != MemoryKind::Reserved as u32)
        .map(|r| r.start + r.length)
        .max()
        .unwrap_or(0)
}

/// The lowest address `>= minimum`, aligned to `align`, where `size` bytes of usable RAM lie in
/// one region of `map`.
pub fn find_usable(map: &MemoryMap, size: u64, align: u64, minimum: u64) -> Option<u64> {
    map.regions()
        .iter()
        .filter(|r| r.kind == MemoryKind::Usable as u32)
        .find_map(|r| {
            let start = r.start.max(minimum).checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            (end <= r.start + r.length).then_some(start)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(a, l, k)| {
                a.to_le_bytes()
                    .into_iter()
                    .chain(l.to_le_bytes())
                    .chain(k.to_le_bytes())
            })
            .collect()
    }

    fn regions(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
        map.regions()
            .iter()
            .map(|r| (r.start, r.start + r.length, r.kind))
            .collect()
    }

    const U: u32 = MemoryKind::Usable as u32;
    const RES: u32 = MemoryKind::Reserved as u32;

    fn build(entries: &[(u64, u64, u32)]) -> Result<MemoryMap, MemoryError> {
        let bytes = e820_bytes(entries);
        MemoryMapBuilder::from_e820(parse_e820(&bytes)?)?.build()
    }

    #[test]
    fn parses_qemu_q35_map() {
        // What QEMU 7.2 reports for `-machine q35 -m 512M`.
        let map = build(&[(0, 0x2000_0000, 1), (0xFEFF_C000, 0x4000, 2)]).unwrap();
        assert_eq!(
            regions(&map),
            [
                (0, 0x1000, RES),
                (0x1000, 0xA_0000, U),
                (0xA_0000, 0x10_0000, RES),
                (0x10_0000, 0x2000_0000, U),
                (0xFEFF_C000, 0xFF00_0000, RES)
            ]
        );
        assert_eq!(top_of_ram(&map), 0x2000_0000);
    }

    #[test]
    fn sorts_merges_and_lets_reserved_win() {
        let map = build(&[
            (0x20_0000, 0x10_0000, 1),
            (0x10_0000, 0x10_0000, 1),
            (0x18_0000, 0x1000, 2),
            (0x30_0000, 0, 1),
        ])
        .unwrap();
        assert_eq!(
            regions(&map),
            [
                (0, 0x1000, RES),
                (0xA_0000, 0x10_0000, RES),
                (0x10_0000, 0x18_0000, U),
                (0x18_0000, 0x18_1000, RES),
                (0x18_1000, 0x30_0000, U)
            ]
        );
    }

    #[test]
    fn trims_unaligned_usable_ram_to_whole_pages() {
        let map = build(&[(0x10_0800, 0x2000, 1), (0x20_0000, 0x1800, 1)]).unwrap();
        let usable: Vec<_> = regions(&map).into_iter().filter(|r| r.2 == U).collect();
        assert_eq!(
            usable,
            [(0x10_1000, 0x10_2000, U), (0x20_0000, 0x20_1000, U)]
        );
        for region in map.regions() {
            if region.kind == U {
                assert_eq!(region.start % PAGE_SIZE, 0);
                assert_eq!(region.length % PAGE_SIZE, 0);
            }
        }
        assert_no_overlap(&map);
    }

    fn assert_no_overlap(map: &MemoryMap) {
        for pair in map.regions().windows(2) {
            assert!(pair[0].start + pair[0].length <= pair[1].start, "{pair:?}");
        }
    }

    #[test]
    fn refuses_malformed_e820() {
        assert!(build(&[]).is_ok());
        assert_eq!(
            parse_e820(&[0u8; 21]).err(),
            Some(MemoryError::BadE820Length(21))
        );
        let too_many = alloc::vec![0u8; 20 * (MAX_E820_ENTRIES + 1)];
        assert!(parse_e820(&too_many).is_err());
        assert_eq!(
            build(&[(u64::MAX - 5, 10, 1)]).unwrap_err(),
            MemoryError::E820Overflow { index: 0 }
        );
    }

    #[test]
    fn marks_loader_and_kernel_memory() {
        let bytes = e820_bytes(&[(0, 0x2000_0000, 1)]);
        let mut builder = MemoryMapBuilder::from_e820(parse_e820(&bytes).unwrap()).unwrap();
        builder
            .mark_used(0x10_0000, 0x20_0000, MemoryKind::Loader)
            .unwrap();
        let map = builder.build().unwrap();
        let kernel_at = find_usable(&map, 0x5000, 0x20_0000, 0x20_0000).unwrap();
        assert_eq!(kernel_at, 0x20_0000);
        builder
            .mark_used(kernel_at, kernel_at + 0x5000, MemoryKind::KernelImage)
            .unwrap();
        // Marking twice fails: it is no longer usable.
        assert_eq!(
            builder.mark_used(kernel_at, kernel_at + 0x1000, MemoryKind::Loader),
            Err(MemoryError::NotUsable {
                start: kernel_at,
                end: kernel_at + 0x1000
            })
        );
        // The legacy hole is never usable.
        assert!(
            builder
                .mark_used(0xA_0000, 0xB_0000, MemoryKind::Loader)
                .is_err()
        );
        let map = builder.build().unwrap();
        assert_eq!(
            regions(&map),
            [
                (0, 0x1000, RES),
                (0x1000, 0xA_0000, U),
                (0xA_0000, 0x10_0000, RES),
                (0x10_0000, 0x20_0000, MemoryKind::Loader as u32),
                (0x20_0000, 0x20_5000, MemoryKind::KernelImage as u32),
                (0x20_5000, 0x2000_0000, U)
            ]
        );
    }

    #[test]
    fn finds_aligned_space_or_none() {
        let map = build(&[(0, 0x30_0000, 1), (0x100_0000, 0x100_0000, 1)]).unwrap();
        assert_eq!(
            find_usable(&map, 0x10_0000, 0x20_0000, 0x20_0000),
            Some(0x20_0000)
        );
        assert_eq!(
            find_usable(&map, 0x20_0000, 0x20_0000, 0x20_0000),
            Some(0x100_0000)
        );
        assert_eq!(find_usable(&map, 0x200_0000, 0x20_0000, 0x20_0000), None);
        assert_eq!(find_usable(&map, u64::MAX, 0x20_0000, 0x20_0000), None);
    }

    #[test]
    fn too_many_regions_is_an_error() {
        let entries: Vec<_> = (0..128u64)
            .map(|i| (0x100_0000 + i * 0x2000, 0x1000, 1 + (i % 2) as u32))
            .collect();
        let result = build(&entries);
        assert!(
            matches!(result, Err(MemoryError::TooManyRegions(_))),
            "{result:?}"
        );
    }
}
