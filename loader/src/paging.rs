//! x86-64 4-level page tables: entry flags and the tables the loader hands over.
//!
//! The hand-over tables identity-map physical memory `[0, top)` read-write and non-executable
//! (1 GiB pages where the CPU has them, 2 MiB pages otherwise), except the 2 MiB pages holding the
//! loader's own code, which stay read-only and executable until the kernel replaces the tables.
//! The kernel's segments are mapped at their virtual addresses with 4 KiB pages and the
//! permissions of their segment (R, RW+NX, RX).
//!
//! Under SEV-SNP every entry that maps private memory carries the C-bit (the encryption mask);
//! MMIO, the GHCB page and anything else that is not wholly private is mapped without it, in
//! pages as small as needed (down to 4 KiB). With a zero mask the tables are exactly the plain
//! ones.

use crate::elf::{KernelElf, Permissions};
use crate::layout::{HUGE_PAGE_SIZE, LARGE_PAGE_SIZE, PAGE_SIZE};
use core::fmt;
use core::ops::Range;

/// The entry maps something.
pub const PRESENT: u64 = 1 << 0;
/// Writes are allowed (with CR0.WP, also for the kernel).
pub const WRITABLE: u64 = 1 << 1;
/// In a PDPT or PD entry: the entry maps a 1 GiB or 2 MiB page.
pub const HUGE_PAGE: u64 = 1 << 7;
/// Instruction fetches fault (needs EFER.NXE).
pub const NO_EXECUTE: u64 = 1 << 63;
/// Bits 12..52 of an entry: the physical address.
pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Flags of a non-leaf entry: the leaves decide writability and execution.
pub const TABLE_FLAGS: u64 = PRESENT | WRITABLE;
/// Entries per table.
pub const ENTRIES: usize = 512;
/// One PDPT covers this much: the identity map's limit.
pub const MAX_IDENTITY_TOP: u64 = 512 * HUGE_PAGE_SIZE;

/// Leaf flags for a kernel segment.
pub fn leaf_flags(permissions: Permissions) -> u64 {
    match permissions {
        Permissions::ReadOnly => PRESENT | NO_EXECUTE,
        Permissions::ReadWrite => PRESENT | WRITABLE | NO_EXECUTE,
        Permissions::ReadExecute => PRESENT,
    }
}

/// Leaf flags for ordinary identity-mapped memory.
pub const IDENTITY_FLAGS: u64 = PRESENT | WRITABLE | NO_EXECUTE;
/// Leaf flags for the identity-mapped pages that hold the loader's code.
pub const LOADER_CODE_FLAGS: u64 = PRESENT;

/// Page sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB, mapped by a page-table entry.
    Size4K,
    /// 2 MiB, mapped by a page-directory entry.
    Size2M,
    /// 1 GiB, mapped by a PDPT entry.
    Size1G,
}

impl PageSize {
    /// Bytes in the page.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => PAGE_SIZE,
            Self::Size2M => LARGE_PAGE_SIZE,
            Self::Size1G => HUGE_PAGE_SIZE,
        }
    }

    /// Table level whose entry maps a page of this size (PML4 = 4).
    const fn leaf_level(self) -> u32 {
        match self {
            Self::Size4K => 1,
            Self::Size2M => 2,
            Self::Size1G => 3,
        }
    }
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// No memory left for another table.
    OutOfTables,
    /// The virtual or physical address is not aligned to the page size, or not canonical.
    Misaligned {
        virtual_address: u64,
        physical_address: u64,
    },
    /// Something is already mapped there.
    AlreadyMapped(u64),
    /// The identity map would need more than one PDPT.
    IdentityTooLarge(u64),
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfTables => write!(f, "page-table pool exhausted"),
            Self::Misaligned {
                virtual_address,
                physical_address,
            } => write!(
                f,
                "cannot map {virtual_address:#x} -> {physical_address:#x}: misaligned or non-canonical"
            ),
            Self::AlreadyMapped(v) => write!(f, "{v:#x} is already mapped"),
            Self::IdentityTooLarge(top) => {
                write!(
                    f,
                    "identity map up to {top:#x} exceeds {MAX_IDENTITY_TOP:#x}"
                )
            }
        }
    }
}

/// Where page tables live: allocation of zeroed tables and access by physical address.
pub trait TableMemory {
    /// Allocates a zeroed, 4 KiB-aligned table and returns its physical address.
    fn allocate_table(&mut self) -> Result<u64, PagingError>;
    /// The table at `address`, which `allocate_table` returned.
    fn table_mut(&mut self, address: u64) -> &mut [u64; ENTRIES];
}

fn is_canonical(address: u64) -> bool {
    let upper = address >> 47;
    upper == 0 || upper == 0x1_FFFF
}

fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// A 4-level page-table hierarchy.
pub struct PageTables<M> {
    memory: M,
    root: u64,
    /// The C-bit mask (0 outside SNP): set in every non-leaf entry, and never part of an address.
    encryption_mask: u64,
}

impl<M: TableMemory> PageTables<M> {
    /// Empty tables: a zeroed PML4.
    pub fn new(memory: M) -> Result<Self, PagingError> {
        Self::with_encryption_mask(memory, 0)
    }

    /// Empty tables whose non-leaf entries carry `mask` (SNP: the tables themselves live in
    /// private memory, as Linux also marks them).
    pub fn with_encryption_mask(mut memory: M, mask: u64) -> Result<Self, PagingError> {
        let root = memory.allocate_table()?;
        Ok(Self {
            memory,
            root,
            encryption_mask: mask,
        })
    }

    fn address_bits(&self) -> u64 {
        ADDRESS_MASK & !self.encryption_mask
    }

    /// Physical address of the PML4 (the value for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The table memory, e.g. to learn how much was used.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Maps one page `virtual_address -> physical_address` with leaf `flags`.
    pub fn map(
        &mut self,
        virtual_address: u64,
        physical_address: u64,
        size: PageSize,
        flags: u64,
    ) -> Result<(), PagingError> {
        let mask = size.bytes() - 1;
        if virtual_address & mask != 0
            || physical_address & mask != 0
            || physical_address & !self.address_bits() & !mask != 0
            || !is_canonical(virtual_address)
        {
            return Err(PagingError::Misaligned {
                virtual_address,
                physical_address,
            });
        }
        let mut table = self.root;
        for level in (size.leaf_level() + 1..=4).rev() {
            let slot = index(virtual_address, level);
            let entry = self.memory.table_mut(table)[slot];
            table = if entry & PRESENT == 0 {
                let next = self.memory.allocate_table()?;
                self.memory.table_mut(table)[slot] = next | TABLE_FLAGS | self.encryption_mask;
                next
            } else if entry & HUGE_PAGE != 0 {
                return Err(PagingError::AlreadyMapped(virtual_address));
            } else {
                entry & self.address_bits()
            };
        }
        let slot = index(virtual_address, size.leaf_level());
        let leaf = &mut self.memory.table_mut(table)[slot];
        if *leaf & PRESENT != 0 {
            return Err(PagingError::AlreadyMapped(virtual_address));
        }
        let huge = if size == PageSize::Size4K {
            0
        } else {
            HUGE_PAGE
        };
        *leaf = physical_address | flags | huge;
        Ok(())
    }

    /// Walks the tables: the physical address `virtual_address` maps to and the leaf's flags
    /// (the encryption mask, when the leaf has it, counts as a flag).
    pub fn translate(&mut self, virtual_address: u64) -> Option<(u64, u64)> {
        let address_bits = self.address_bits();
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = self.memory.table_mut(table)[index(virtual_address, level)];
            if entry & PRESENT == 0 {
                return None;
            }
            let is_leaf = level == 1 || (level <= 3 && entry & HUGE_PAGE != 0);
            if is_leaf {
                let page = 1u64 << (12 + 9 * (level - 1));
                let physical =
                    (entry & address_bits & !(page - 1)) | (virtual_address & (page - 1));
                return Some((physical, entry & !address_bits));
            }
            table = entry & address_bits;
        }
        None
    }
}

/// What the hand-over tables must map.
#[derive(Clone, Debug)]
pub struct BootMapping<'a> {
    /// Identity-map `[0, identity_top)`; rounded up to 1 GiB, at most [`MAX_IDENTITY_TOP`].
    pub identity_top: u64,
    /// Physical range of the loader's code (kept executable, rounded out to 2 MiB pages).
    pub loader_code: Range<u64>,
    /// Whether the CPU supports 1 GiB pages.
    pub huge_pages: bool,
    /// The kernel to map.
    pub kernel: &'a KernelElf<'a>,
    /// Physical address its lowest page was copied to.
    pub kernel_physical: u64,
    /// SNP: the C-bit mask for private memory; 0 elsewhere (then `private` and `shared` are
    /// ignored).
    pub encryption_mask: u64,
    /// Physical ranges of private memory: validated RAM and the firmware image. A page carries
    /// the mask only if it lies wholly inside one of them.
    pub private: &'a [Range<u64>],
    /// Pages inside `private` that are shared with the host (the GHCB): never the mask.
    pub shared: &'a [Range<u64>],
}

impl BootMapping<'_> {
    /// The mask for identity-mapping `range` as one page: the encryption mask when it is wholly
    /// private and holds no shared page, 0 when none of it is private, `None` when it is mixed
    /// (then it must be split into smaller pages).
    fn encryption_for(&self, range: Range<u64>) -> Option<u64> {
        if self.encryption_mask == 0 {
            return Some(0);
        }
        let overlaps = |other: &Range<u64>| other.start < range.end && range.start < other.end;
        let wholly_private = self
            .private
            .iter()
            .any(|p| p.start <= range.start && range.end <= p.end);
        if wholly_private && !self.shared.iter().any(overlaps) {
            Some(self.encryption_mask)
        } else if self.private.iter().any(overlaps) {
            None
        } else {
            Some(0)
        }
    }
}

/// Identity-maps the page `[start, start + size)`, or its smaller pages where the page holds
/// both private and non-private memory (or, for a 1 GiB page, the loader's code).
fn map_identity<M: TableMemory>(
    tables: &mut PageTables<M>,
    mapping: &BootMapping<'_>,
    code: &Range<u64>,
    start: u64,
    size: PageSize,
) -> Result<(), PagingError> {
    let end = start + size.bytes();
    let holds_code = code.start < end && start < code.end;
    // The code range is 2 MiB aligned, so a 2 MiB or 4 KiB page is wholly inside or outside it.
    let flags = if holds_code {
        LOADER_CODE_FLAGS
    } else {
        IDENTITY_FLAGS
    };
    let encryption = mapping.encryption_for(start..end);
    let smaller = match (size, encryption) {
        (PageSize::Size1G, Some(_)) if mapping.huge_pages && !holds_code => None,
        (PageSize::Size1G, _) => Some(PageSize::Size2M),
        (PageSize::Size2M, None) => Some(PageSize::Size4K),
        (PageSize::Size2M, Some(_)) | (PageSize::Size4K, _) => None,
    };
    match smaller {
        Some(smaller) => {
            let mut page = start;
            while page < end {
                map_identity(tables, mapping, code, page, smaller)?;
                page += smaller.bytes();
            }
            Ok(())
        }
        // A 4 KiB page that is only partly private (the end of a RAM range that is not page
        // aligned) was never validated as a whole: it is mapped without the mask.
        None => tables.map(start, start, size, flags | encryption.unwrap_or(0)),
    }
}

/// The entries of a page table that identity-maps the 2 MiB page at `base` in 4 KiB pages with
/// leaf `flags`, each with `mask` except those overlapping `shared` (under SNP: the boot tables'
/// first 2 MiB page split so that the GHCB page can be mapped without the C-bit).
pub fn split_identity_large_page(
    base: u64,
    flags: u64,
    mask: u64,
    shared: &[Range<u64>],
) -> [u64; ENTRIES] {
    core::array::from_fn(|i| {
        let page = base + i as u64 * PAGE_SIZE;
        let is_shared = shared
            .iter()
            .any(|s| s.start < page + PAGE_SIZE && page < s.end);
        page | flags | if is_shared { 0 } else { mask }
    })
}

/// Builds the hand-over tables described by `mapping` in `memory`.
pub fn build_boot_tables<M: TableMemory>(
    memory: M,
    mapping: &BootMapping<'_>,
) -> Result<PageTables<M>, PagingError> {
    let top = mapping
        .identity_top
        .checked_next_multiple_of(HUGE_PAGE_SIZE)
        .filter(|&top| top <= MAX_IDENTITY_TOP)
        .ok_or(PagingError::IdentityTooLarge(mapping.identity_top))?;
    let code_start = mapping.loader_code.start & !(LARGE_PAGE_SIZE - 1);
    let code_end = mapping.loader_code.end.next_multiple_of(LARGE_PAGE_SIZE);
    let mut tables = PageTables::with_encryption_mask(memory, mapping.encryption_mask)?;
    let mut gib = 0;
    while gib < top {
        map_identity(
            &mut tables,
            mapping,
            &(code_start..code_end),
            gib,
            PageSize::Size1G,
        )?;
        gib += HUGE_PAGE_SIZE;
    }
    let kernel = mapping.kernel;
    for segment in kernel.segments() {
        // The kernel's copy is in RAM the loader validated: private.
        let flags = leaf_flags(segment.permissions) | mapping.encryption_mask;
        let mut page = segment.page_start();
        while page < segment.page_end() {
            let physical = mapping.kernel_physical + (page - kernel.virtual_start());
            tables.map(page, physical, PageSize::Size4K, flags)?;
            page += PAGE_SIZE;
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::test_elf::{Segment, build};
    use crate::layout::KERNEL_VIRTUAL_BASE;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    /// Tables in host memory, at made-up physical addresses.
    struct Arena {
        tables: Vec<Box<[u64; ENTRIES]>>,
        limit: usize,
    }

    const ARENA_BASE: u64 = 0x4000_0000_0000;
    const GHCB: Range<u64> = 0x10_8000..0x10_9000;

    impl TableMemory for Arena {
        fn allocate_table(&mut self) -> Result<u64, PagingError> {
            if self.tables.len() == self.limit {
                return Err(PagingError::OutOfTables);
            }
            self.tables.push(Box::new([0; ENTRIES]));
            Ok(ARENA_BASE + (self.tables.len() as u64 - 1) * PAGE_SIZE)
        }

        fn table_mut(&mut self, address: u64) -> &mut [u64; ENTRIES] {
            &mut self.tables[((address - ARENA_BASE) / PAGE_SIZE) as usize]
        }
    }

    fn arena(limit: usize) -> Arena {
        Arena {
            tables: Vec::new(),
            limit,
        }
    }

    #[test]
    fn segment_flags_enforce_w_xor_x() {
        assert_eq!(leaf_flags(Permissions::ReadExecute), PRESENT);
        assert_eq!(leaf_flags(Permissions::ReadOnly), PRESENT | NO_EXECUTE);
        assert_eq!(
            leaf_flags(Permissions::ReadWrite),
            PRESENT | WRITABLE | NO_EXECUTE
        );
        for p in [
            Permissions::ReadExecute,
            Permissions::ReadOnly,
            Permissions::ReadWrite,
        ] {
            let f = leaf_flags(p);
            assert!(f & WRITABLE == 0 || f & NO_EXECUTE != 0, "{p:?} is W+X");
        }
    }

    #[test]
    fn maps_and_translates_each_page_size() {
        let mut tables = PageTables::new(arena(16)).unwrap();
        tables
            .map(0x4000_0000, 0x4000_0000, PageSize::Size1G, IDENTITY_FLAGS)
            .unwrap();
        tables
            .map(0x20_0000, 0x80_0000, PageSize::Size2M, PRESENT)
            .unwrap();
        tables
            .map(
                KERNEL_VIRTUAL_BASE + 0x1000,
                0x30_0000,
                PageSize::Size4K,
                PRESENT,
            )
            .unwrap();
        assert_eq!(
            tables.translate(0x4123_4567),
            Some((0x4123_4567, IDENTITY_FLAGS | HUGE_PAGE))
        );
        assert_eq!(
            tables.translate(0x21_0010),
            Some((0x81_0010, PRESENT | HUGE_PAGE))
        );
        assert_eq!(
            tables.translate(KERNEL_VIRTUAL_BASE + 0x1ABC),
            Some((0x30_0ABC, PRESENT))
        );
        assert_eq!(tables.translate(KERNEL_VIRTUAL_BASE), None);
        assert_eq!(tables.translate(0x8000_0000), None);
    }

    #[test]
    fn refuses_misaligned_double_and_noncanonical_mappings() {
        let mut tables = PageTables::new(arena(16)).unwrap();
        assert!(matches!(
            tables.map(0x1000, 0x1000, PageSize::Size2M, PRESENT),
            Err(PagingError::Misaligned { .. })
        ));
        assert!(matches!(
            tables.map(0x8000_0000_0000, 0, PageSize::Size4K, PRESENT),
            Err(PagingError::Misaligned { .. })
        ));
        assert!(matches!(
            tables.map(0, 1 << 52, PageSize::Size4K, PRESENT),
            Err(PagingError::Misaligned { .. })
        ));
        tables.map(0, 0, PageSize::Size2M, PRESENT).unwrap();
        assert_eq!(
            tables.map(0, 0, PageSize::Size2M, PRESENT),
            Err(PagingError::AlreadyMapped(0))
        );
        // A 4 KiB page inside an existing 2 MiB page.
        assert_eq!(
            tables.map(0x1000, 0x1000, PageSize::Size4K, PRESENT),
            Err(PagingError::AlreadyMapped(0x1000))
        );
        let mut tiny = PageTables::new(arena(2)).unwrap();
        assert_eq!(
            tiny.map(0, 0, PageSize::Size4K, PRESENT),
            Err(PagingError::OutOfTables)
        );
    }

    #[test]
    fn hand_over_tables_follow_the_contract() {
        let base = KERNEL_VIRTUAL_BASE;
        let bytes = build(
            base,
            &[
                Segment::load(5, base, &[0xC3], 0),
                Segment::load(4, base + 0x1000, b"ro", 0),
                Segment::load(6, base + 0x3000, b"rw", 0x2000),
            ],
        );
        let kernel = KernelElf::parse(&bytes).unwrap();
        let loader_code = 0xFFFC_0000..0x1_0000_0000;
        for huge_pages in [true, false] {
            let mapping = BootMapping {
                identity_top: 0x1_2000_0000, // 4.5 GiB of RAM
                loader_code: loader_code.clone(),
                huge_pages,
                kernel: &kernel,
                kernel_physical: 0x40_0000,
                encryption_mask: 0,
                private: &[],
                shared: &[],
            };
            let mut tables = build_boot_tables(arena(64), &mapping).unwrap();
            let leaf =
                |t: &mut PageTables<Arena>, v| t.translate(v).map(|(p, f)| (p, f & !HUGE_PAGE));
            // RAM and MMIO below the top: identity, RW, NX.
            for address in [0u64, 0x10_0000, 0x8000_0000, 0xFEC0_0000, 0x1_1FFF_F000] {
                assert_eq!(
                    leaf(&mut tables, address),
                    Some((address, IDENTITY_FLAGS)),
                    "{address:#x}"
                );
            }
            // The loader's code: read-only and executable, in 2 MiB pages.
            assert_eq!(
                leaf(&mut tables, 0xFFFF_FFF0),
                Some((0xFFFF_FFF0, LOADER_CODE_FLAGS))
            );
            assert_eq!(
                leaf(&mut tables, 0xFFE0_0000),
                Some((0xFFE0_0000, LOADER_CODE_FLAGS))
            );
            assert_eq!(leaf(&mut tables, 0xFFDF_F000).unwrap().1, IDENTITY_FLAGS);
            assert_eq!(tables.translate(0x1_4000_0000), None);
            // The kernel: per-segment permissions, gaps unmapped.
            assert_eq!(tables.translate(base), Some((0x40_0000, PRESENT)));
            assert_eq!(
                tables.translate(base + 0x1008),
                Some((0x40_1008, PRESENT | NO_EXECUTE))
            );
            assert_eq!(tables.translate(base + 0x2000), None);
            assert_eq!(
                tables.translate(base + 0x5FFF),
                Some((0x40_5FFF, PRESENT | WRITABLE | NO_EXECUTE))
            );
            assert_eq!(tables.translate(base + 0x6000), None);
        }
        let too_big = BootMapping {
            identity_top: MAX_IDENTITY_TOP + 1,
            loader_code,
            huge_pages: true,
            kernel: &kernel,
            kernel_physical: 0x40_0000,
            encryption_mask: 0,
            private: &[],
            shared: &[],
        };
        assert!(matches!(
            build_boot_tables(arena(64), &too_big),
            Err(PagingError::IdentityTooLarge(_))
        ));
    }

    #[test]
    fn snp_tables_carry_the_c_bit_on_private_memory_only() {
        const C_BIT: u64 = 1 << 51;
        let base = KERNEL_VIRTUAL_BASE;
        let bytes = build(base, &[Segment::load(5, base, &[0xC3], 0)]);
        let kernel = KernelElf::parse(&bytes).unwrap();
        // q35-like: low RAM ending inside a page, the legacy hole, RAM up to 2 GiB, the PCI
        // hole, a 6 MiB image below 4 GiB, RAM above 4 GiB; the GHCB page is shared.
        let private = [
            0..0x9_FC00,
            0x10_0000..0x8000_0000,
            0xFFA0_0000..0x1_0000_0000,
            0x1_0000_0000..0x1_2000_0000,
        ];
        let shared = core::slice::from_ref(&GHCB);
        for huge_pages in [true, false] {
            let mapping = BootMapping {
                identity_top: 0x1_2000_0000,
                loader_code: 0xFFFE_0000..0x1_0000_0000,
                huge_pages,
                kernel: &kernel,
                kernel_physical: 0x20_0000,
                encryption_mask: C_BIT,
                private: &private,
                shared,
            };
            let mut tables = build_boot_tables(arena(64), &mapping).unwrap();
            let leaf =
                |t: &mut PageTables<Arena>, v| t.translate(v).map(|(p, f)| (p, f & !HUGE_PAGE));
            for address in [
                0u64,
                0x9_E000,
                0x10_0000,
                0x10_7FF8,
                0x10_9000,
                0x1F_F000,
                0x4000_0000,
                0x7FFF_F000,
                0xFFA0_0000,
                0x1_0000_0000,
                0x1_1FFF_F000,
            ] {
                assert_eq!(
                    leaf(&mut tables, address),
                    Some((address, IDENTITY_FLAGS | C_BIT)),
                    "{address:#x} is private"
                );
            }
            // The partial page at the end of low RAM, the legacy hole, the GHCB page, MMIO.
            for address in [0x9_F000, 0xA_0000, 0x10_8000, 0x8000_0000, 0xFEC0_0000] {
                assert_eq!(
                    leaf(&mut tables, address),
                    Some((address, IDENTITY_FLAGS)),
                    "{address:#x} is not private"
                );
            }
            assert_eq!(
                leaf(&mut tables, 0xFFFF_FFF0),
                Some((0xFFFF_FFF0, LOADER_CODE_FLAGS | C_BIT))
            );
            assert_eq!(
                tables.translate(0x10_8000),
                Some((0x10_8000, IDENTITY_FLAGS)),
                "the GHCB is a 4 KiB page"
            );
            assert_eq!(tables.translate(base), Some((0x20_0000, PRESENT | C_BIT)));
            // Non-leaf entries carry the mask too; the walk strips it from addresses.
            let root = tables.root();
            let pml4_0 = tables.memory.table_mut(root)[0];
            assert_eq!(pml4_0 & (TABLE_FLAGS | C_BIT), TABLE_FLAGS | C_BIT);
        }
    }

    #[test]
    fn a_zero_mask_gives_the_plain_tables() {
        let base = KERNEL_VIRTUAL_BASE;
        let bytes = build(base, &[Segment::load(5, base, &[0xC3], 0)]);
        let kernel = KernelElf::parse(&bytes).unwrap();
        let private = [0..0x9_F000, 0x10_0000..0x8000_0000];
        let shared = core::slice::from_ref(&GHCB);
        let plain = |private, shared| {
            let mapping = BootMapping {
                identity_top: 0x1_0000_0000,
                loader_code: 0xFFFE_0000..0x1_0000_0000,
                huge_pages: true,
                kernel: &kernel,
                kernel_physical: 0x20_0000,
                encryption_mask: 0,
                private,
                shared,
            };
            let tables = build_boot_tables(arena(64), &mapping).unwrap();
            tables.memory.tables.clone()
        };
        assert_eq!(plain(&[], &[]), plain(&private, shared));
    }

    #[test]
    fn splitting_a_large_page_leaves_only_shared_pages_unencrypted() {
        let entries =
            split_identity_large_page(0, IDENTITY_FLAGS, 1 << 47, core::slice::from_ref(&GHCB));
        assert_eq!(entries[0], IDENTITY_FLAGS | 1 << 47);
        assert_eq!(entries[0x107], 0x10_7000 | IDENTITY_FLAGS | 1 << 47);
        assert_eq!(entries[0x108], 0x10_8000 | IDENTITY_FLAGS);
        assert_eq!(entries[0x109], 0x10_9000 | IDENTITY_FLAGS | 1 << 47);
        assert_eq!(entries[511], 0x1F_F000 | IDENTITY_FLAGS | 1 << 47);
        assert_eq!(entries.iter().filter(|e| *e & (1 << 47) == 0).count(), 1);
    }
}
