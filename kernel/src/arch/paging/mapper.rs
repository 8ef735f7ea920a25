//! Builds 4-level page tables over any source of table frames, so the same code runs on bare
//! metal (frames from the frame allocator, reached through the identity map) and in host tests
//! (frames in a `Vec`).

use super::flags::{self, Access, Caching, PageSize};
use crate::mm::address::{PhysAddr, VirtAddr};
use core::fmt;

/// Reads and writes page tables by physical address.
pub trait TableAccess {
    /// The table held in `frame`. Only called with frames that hold page tables.
    fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512];
}

/// A [`TableAccess`] that can also provide new, zeroed table frames.
pub trait TableFrames: TableAccess {
    /// A zeroed 4 KiB frame owned by the tables from now on.
    fn allocate_table(&mut self) -> Option<PhysAddr>;
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Virtual or physical address not aligned to the page size.
    NotAligned(VirtAddr),
    /// Virtual address outside the canonical halves.
    NonCanonical(VirtAddr),
    /// Something is mapped there already (no silent remapping).
    AlreadyMapped(VirtAddr),
    /// No frame left for a page table.
    OutOfFrames,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAligned(v) => write!(f, "mapping at {v} is not aligned to its page size"),
            Self::NonCanonical(v) => write!(f, "{v} is not a canonical address"),
            Self::AlreadyMapped(v) => write!(f, "{v} is already mapped"),
            Self::OutOfFrames => f.write_str("out of frames for page tables"),
        }
    }
}

/// A set of page tables under construction.
pub struct PageTables<F> {
    root: PhysAddr,
    frames: F,
    /// Bits ORed into table entries (the SNP C-bit: tables live in private memory).
    table_mask: u64,
}

impl<F: TableFrames> PageTables<F> {
    /// Starts empty tables.
    pub fn new(mut frames: F, table_mask: u64) -> Result<Self, MapError> {
        let root = frames.allocate_table().ok_or(MapError::OutOfFrames)?;
        Ok(Self {
            root,
            frames,
            table_mask,
        })
    }

    /// Tables that already exist at `root` (the live kernel tables), to add mappings to them.
    /// New tables come from `frames`; existing mappings are never replaced ([`MapError::AlreadyMapped`]).
    pub fn open(frames: F, root: PhysAddr, table_mask: u64) -> Self {
        Self {
            root,
            frames,
            table_mask,
        }
    }

    /// Physical address of the PML4 (the value for CR3).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The frame source, e.g. to take frames for other uses while building.
    pub fn frames_mut(&mut self) -> &mut F {
        &mut self.frames
    }

    /// Gives the frame source back.
    pub fn into_frames(self) -> F {
        self.frames
    }

    /// Maps one page.
    pub fn map(
        &mut self,
        virt: VirtAddr,
        frame: PhysAddr,
        size: PageSize,
        access: Access,
        caching: Caching,
        memory_mask: u64,
    ) -> Result<(), MapError> {
        if !virt.is_canonical() {
            return Err(MapError::NonCanonical(virt));
        }
        if !virt.is_aligned(size.bytes()) || !frame.is_aligned(size.bytes()) {
            return Err(MapError::NotAligned(virt));
        }
        let mut table = self.root;
        for level in (size.level() + 1..=4).rev() {
            let index = virt.table_index(level);
            let entry = self.frames.table(table)[index];
            table = if entry & flags::PRESENT == 0 {
                let next = self.frames.allocate_table().ok_or(MapError::OutOfFrames)?;
                self.frames.table(table)[index] = flags::table_entry(next, self.table_mask);
                next
            } else if entry & flags::HUGE_PAGE != 0 {
                return Err(MapError::AlreadyMapped(virt));
            } else {
                PhysAddr::new(entry & flags::ADDRESS_MASK & !self.table_mask)
            };
        }
        let slot = &mut self.frames.table(table)[virt.table_index(size.level())];
        if *slot & flags::PRESENT != 0 {
            return Err(MapError::AlreadyMapped(virt));
        }
        *slot = flags::leaf_entry(frame, size, access, caching, memory_mask);
        Ok(())
    }

    /// Maps `[phys, phys + length)` at `virt`, with 2 MiB pages wherever both addresses are
    /// 2 MiB aligned and a whole large page fits, 4 KiB pages elsewhere.
    pub fn map_range(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        length: u64,
        access: Access,
        caching: Caching,
        memory_mask: u64,
    ) -> Result<(), MapError> {
        let small = PageSize::Size4K.bytes();
        if !virt.is_aligned(small) || !phys.is_aligned(small) || !length.is_multiple_of(small) {
            return Err(MapError::NotAligned(virt));
        }
        let mut offset = 0;
        while offset < length {
            let v = virt
                .checked_add(offset)
                .ok_or(MapError::NonCanonical(virt))?;
            let p = phys.checked_add(offset).ok_or(MapError::NotAligned(virt))?;
            let large = PageSize::Size2M.bytes();
            let size = if v.is_aligned(large) && p.is_aligned(large) && length - offset >= large {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            };
            self.map(v, p, size, access, caching, memory_mask)?;
            offset += size.bytes();
        }
        Ok(())
    }

    /// The frame and leaf entry mapping `virt`, if any.
    pub fn translate(&mut self, virt: VirtAddr) -> Option<(PhysAddr, u64)> {
        translate(&mut self.frames, self.root, virt, self.table_mask)
    }
}

/// Walks the tables at `root` (any tables, e.g. the loader's) for `virt`: the physical address
/// it maps to and the leaf entry. `table_mask` is stripped from table addresses.
pub fn translate(
    access: &mut impl TableAccess,
    root: PhysAddr,
    virt: VirtAddr,
    table_mask: u64,
) -> Option<(PhysAddr, u64)> {
    if !virt.is_canonical() {
        return None;
    }
    let mut table = root;
    for level in (1..=4u8).rev() {
        let entry = access.table(table)[virt.table_index(level)];
        if entry & flags::PRESENT == 0 {
            return None;
        }
        let frame = entry & flags::ADDRESS_MASK & !table_mask;
        let is_leaf = level == 1 || (level <= 3 && entry & flags::HUGE_PAGE != 0);
        if is_leaf {
            let page_bytes = 1u64 << (12 + 9 * (level as u64 - 1));
            let frame = frame & !(page_bytes - 1);
            return Some((
                PhysAddr::new(frame + (virt.as_u64() & (page_bytes - 1))),
                entry,
            ));
        }
        table = PhysAddr::new(frame);
    }
    None
}

/// What a set of page tables maps, by effective permission (the AND of writable bits and the OR
/// of NX bits along each walk), and the first writable-and-executable page if there is one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Bytes mapped read + execute.
    pub read_execute: u64,
    /// Bytes mapped read-only, not executable.
    pub read_only: u64,
    /// Bytes mapped read-write, not executable.
    pub read_write: u64,
    /// The first virtual address that is both writable and executable.
    pub writable_executable: Option<VirtAddr>,
}

/// Walks every present mapping under `root` and classifies it.
pub fn audit(access: &mut impl TableAccess, root: PhysAddr, table_mask: u64) -> Audit {
    let mut result = Audit::default();
    audit_table(access, root, 4, 0, true, false, table_mask, &mut result);
    result
}

#[allow(clippy::too_many_arguments)]
fn audit_table(
    access: &mut impl TableAccess,
    table: PhysAddr,
    level: u8,
    base: u64,
    writable: bool,
    no_execute: bool,
    table_mask: u64,
    result: &mut Audit,
) {
    let entries = *access.table(table);
    let span = 1u64 << (12 + 9 * (u64::from(level) - 1));
    for (index, entry) in entries.into_iter().enumerate() {
        if entry & flags::PRESENT == 0 {
            continue;
        }
        let mut virt = base + index as u64 * span;
        if level == 4 && index >= 256 {
            virt |= 0xffff_0000_0000_0000; // sign extension of bit 47
        }
        let writable = writable && entry & flags::WRITABLE != 0;
        let no_execute = no_execute || entry & flags::NO_EXECUTE != 0;
        let is_leaf = level == 1 || (level <= 3 && entry & flags::HUGE_PAGE != 0);
        if !is_leaf {
            let next = PhysAddr::new(entry & flags::ADDRESS_MASK & !table_mask);
            audit_table(
                access,
                next,
                level - 1,
                virt,
                writable,
                no_execute,
                table_mask,
                result,
            );
            continue;
        }
        match (writable, no_execute) {
            (true, false) => {
                result
                    .writable_executable
                    .get_or_insert(VirtAddr::new(virt));
            }
            (false, false) => result.read_execute += span,
            (false, true) => result.read_only += span,
            (true, true) => result.read_write += span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    const BASE: u64 = 0x4000_0000;

    /// Tables in host memory; frame `BASE + i * 4096` is `tables[i]`.
    struct HostFrames {
        tables: Vec<Box<[u64; 512]>>,
        limit: usize,
    }

    impl TableAccess for HostFrames {
        fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
            &mut self.tables[((frame.as_u64() - BASE) / 4096) as usize]
        }
    }

    impl TableFrames for HostFrames {
        fn allocate_table(&mut self) -> Option<PhysAddr> {
            if self.tables.len() == self.limit {
                return None;
            }
            self.tables.push(Box::new([0; 512]));
            Some(PhysAddr::new(BASE + (self.tables.len() as u64 - 1) * 4096))
        }
    }

    fn tables(limit: usize) -> PageTables<HostFrames> {
        PageTables::new(
            HostFrames {
                tables: Vec::new(),
                limit,
            },
            0,
        )
        .unwrap()
    }

    #[test]
    fn maps_and_translates_kernel_pages() {
        let mut pt = tables(16);
        let text = VirtAddr::new(0xFFFF_FFFF_8000_0000);
        pt.map(
            text,
            PhysAddr::new(0x20_0000),
            PageSize::Size4K,
            Access::ReadExecute,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        let (phys, entry) = pt.translate(VirtAddr::new(0xFFFF_FFFF_8000_0123)).unwrap();
        assert_eq!(phys, PhysAddr::new(0x20_0123));
        assert_eq!(flags::access_of(entry), Some(Access::ReadExecute));
        assert!(pt.translate(VirtAddr::new(0xFFFF_FFFF_8000_1000)).is_none());
        // PML4 + PDPT + PD + PT.
        assert_eq!(pt.into_frames().tables.len(), 4);
    }

    #[test]
    fn ranges_use_large_pages_where_aligned() {
        let mut pt = tables(16);
        // 4 KiB head, one 2 MiB page, 4 KiB tail.
        pt.map_range(
            VirtAddr::new(0x1f_f000),
            PhysAddr::new(0x1f_f000),
            0x20_2000,
            Access::ReadWrite,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        let (_, head) = pt.translate(VirtAddr::new(0x1f_f000)).unwrap();
        let (phys, large) = pt.translate(VirtAddr::new(0x2f_ffff)).unwrap();
        let (_, tail) = pt.translate(VirtAddr::new(0x40_0000)).unwrap();
        assert_eq!(phys, PhysAddr::new(0x2f_ffff));
        assert_eq!(head & flags::HUGE_PAGE, 0);
        assert_ne!(large & flags::HUGE_PAGE, 0);
        assert_eq!(tail & flags::HUGE_PAGE, 0);
        assert!(pt.translate(VirtAddr::new(0x40_1000)).is_none());
        assert!(pt.translate(VirtAddr::new(0x1f_e000)).is_none());
        for entry in [head, large, tail] {
            assert!(!flags::is_writable_and_executable(entry));
        }
    }

    #[test]
    fn refuses_remapping_misalignment_and_non_canonical() {
        let mut pt = tables(16);
        let v = VirtAddr::new(0x20_0000);
        pt.map(
            v,
            PhysAddr::new(0x20_0000),
            PageSize::Size2M,
            Access::ReadOnly,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        assert_eq!(
            pt.map(
                v,
                PhysAddr::new(0x40_0000),
                PageSize::Size2M,
                Access::ReadOnly,
                Caching::WriteBack,
                0
            ),
            Err(MapError::AlreadyMapped(v))
        );
        // A 4 KiB page inside an existing 2 MiB page.
        let inside = VirtAddr::new(0x20_1000);
        assert_eq!(
            pt.map(
                inside,
                PhysAddr::new(0x1000),
                PageSize::Size4K,
                Access::ReadOnly,
                Caching::WriteBack,
                0
            ),
            Err(MapError::AlreadyMapped(inside))
        );
        let odd = VirtAddr::new(0x1000);
        assert_eq!(
            pt.map(
                odd,
                PhysAddr::new(0x1000),
                PageSize::Size2M,
                Access::ReadOnly,
                Caching::WriteBack,
                0
            ),
            Err(MapError::NotAligned(odd))
        );
        let hole = VirtAddr::new(0x0000_8000_0000_0000);
        assert_eq!(
            pt.map(
                hole,
                PhysAddr::new(0),
                PageSize::Size4K,
                Access::ReadOnly,
                Caching::WriteBack,
                0
            ),
            Err(MapError::NonCanonical(hole))
        );
    }

    #[test]
    fn audit_classifies_and_finds_write_execute() {
        let mut pt = tables(16);
        let kernel = VirtAddr::new(0xFFFF_FFFF_8000_0000);
        pt.map(
            kernel,
            PhysAddr::new(0x20_0000),
            PageSize::Size4K,
            Access::ReadExecute,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        pt.map(
            VirtAddr::new(0xFFFF_FFFF_8000_1000),
            PhysAddr::new(0x20_1000),
            PageSize::Size4K,
            Access::ReadOnly,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        pt.map_range(
            VirtAddr::new(0x20_0000),
            PhysAddr::new(0x20_0000),
            0x20_1000,
            Access::ReadWrite,
            Caching::WriteBack,
            0,
        )
        .unwrap();
        let root = pt.root();
        let mut frames = pt.into_frames();
        let clean = audit(&mut frames, root, 0);
        assert_eq!(
            clean,
            Audit {
                read_execute: 0x1000,
                read_only: 0x1000,
                read_write: 0x20_1000,
                writable_executable: None
            }
        );
        // Forge a W+X leaf: the RX text page made writable.
        let mut pt_frame = root;
        for level in [4u8, 3, 2] {
            let entry = frames.table(pt_frame)[kernel.table_index(level)];
            pt_frame = PhysAddr::new(entry & flags::ADDRESS_MASK);
        }
        let slot = kernel.table_index(1);
        frames.table(pt_frame)[slot] |= flags::WRITABLE;
        assert_eq!(
            audit(&mut frames, root, 0).writable_executable,
            Some(kernel)
        );
    }

    #[test]
    fn running_out_of_table_frames_is_an_error() {
        let mut pt = tables(2);
        assert_eq!(
            pt.map(
                VirtAddr::new(0),
                PhysAddr::new(0),
                PageSize::Size4K,
                Access::ReadOnly,
                Caching::WriteBack,
                0
            ),
            Err(MapError::OutOfFrames)
        );
    }

    #[test]
    fn encryption_mask_is_kept_out_of_table_addresses() {
        let c_bit = 1u64 << 51;
        let mut pt = PageTables::new(
            HostFrames {
                tables: Vec::new(),
                limit: 8,
            },
            c_bit,
        )
        .unwrap();
        pt.map(
            VirtAddr::new(0x5000),
            PhysAddr::new(0x9000),
            PageSize::Size4K,
            Access::ReadWrite,
            Caching::WriteBack,
            c_bit,
        )
        .unwrap();
        let (phys, entry) = pt.translate(VirtAddr::new(0x5008)).unwrap();
        assert_eq!(entry & c_bit, c_bit);
        // The leaf entry carries the mask; the translated address does not.
        assert_eq!(phys, PhysAddr::new(0x9008));
    }
}
