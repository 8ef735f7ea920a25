//! Page-table entry bits and the one place where mapping permissions become bits.
//!
//! W^X holds by construction: [`Access`] has no variant that is both writable and executable,
//! and [`leaf_entry`] sets NX on everything that is not [`Access::ReadExecute`].

use crate::mm::address::PhysAddr;

/// Entry is present.
pub const PRESENT: u64 = 1 << 0;
/// Writes allowed (with CR0.WP also for the kernel).
pub const WRITABLE: u64 = 1 << 1;
/// Page-level write-through (PAT index bit 0).
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Page-level cache disable (PAT index bit 1).
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Set by the CPU on access.
pub const ACCESSED: u64 = 1 << 5;
/// Set by the CPU on write.
pub const DIRTY: u64 = 1 << 6;
/// In a PDPT or PD entry: maps a 1 GiB or 2 MiB page instead of pointing to a table.
pub const HUGE_PAGE: u64 = 1 << 7;
/// Instruction fetches fault (needs EFER.NXE).
pub const NO_EXECUTE: u64 = 1 << 63;
/// Bits 51..12: the physical frame.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// What the kernel may do with a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only, never executed (constants).
    ReadOnly,
    /// Read and write, never executed (data, bss, heap, stacks, MMIO).
    ReadWrite,
    /// Read and execute, never written (code).
    ReadExecute,
}

/// How the memory is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Normal RAM.
    WriteBack,
    /// Device registers (PCD|PWT = PAT entry 3, UC with the reset PAT).
    Uncached,
}

/// Size of a leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB, in a page table (level 1).
    Size4K,
    /// 2 MiB, in a page directory (level 2).
    Size2M,
}

impl PageSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 0x1000,
            Self::Size2M => 0x20_0000,
        }
    }

    /// The table level whose entry maps a page of this size.
    pub const fn level(self) -> u8 {
        match self {
            Self::Size4K => 1,
            Self::Size2M => 2,
        }
    }
}

/// The entry mapping `frame` with `access` and `caching`. `memory_mask` is ORed in: the SNP
/// C-bit for private memory, the TDX shared bit for shared memory, 0 on native.
pub const fn leaf_entry(
    frame: PhysAddr,
    size: PageSize,
    access: Access,
    caching: Caching,
    memory_mask: u64,
) -> u64 {
    let mut entry = (frame.as_u64() & ADDRESS_MASK) | PRESENT | memory_mask;
    entry |= match access {
        Access::ReadOnly => NO_EXECUTE,
        Access::ReadWrite => WRITABLE | NO_EXECUTE,
        Access::ReadExecute => 0,
    };
    if let Caching::Uncached = caching {
        entry |= CACHE_DISABLE | WRITE_THROUGH;
    }
    if let PageSize::Size2M = size {
        entry |= HUGE_PAGE;
    }
    entry
}

/// The entry pointing to a lower-level table. Permissions are decided at the leaf, so tables
/// allow everything (writes and execution are restricted only where a leaf says so).
pub const fn table_entry(table: PhysAddr, memory_mask: u64) -> u64 {
    (table.as_u64() & ADDRESS_MASK) | PRESENT | WRITABLE | memory_mask
}

/// Whether a leaf entry would allow both writing and executing.
pub const fn is_writable_and_executable(entry: u64) -> bool {
    entry & PRESENT != 0 && entry & WRITABLE != 0 && entry & NO_EXECUTE == 0
}

/// The [`Access`] a present leaf entry grants, or `None` for W+X or non-present entries.
pub const fn access_of(entry: u64) -> Option<Access> {
    if entry & PRESENT == 0 {
        return None;
    }
    match (entry & WRITABLE != 0, entry & NO_EXECUTE != 0) {
        (false, true) => Some(Access::ReadOnly),
        (true, true) => Some(Access::ReadWrite),
        (false, false) => Some(Access::ReadExecute),
        (true, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ACCESS: [Access; 3] = [Access::ReadOnly, Access::ReadWrite, Access::ReadExecute];

    #[test]
    fn no_access_yields_writable_and_executable() {
        for access in ALL_ACCESS {
            for caching in [Caching::WriteBack, Caching::Uncached] {
                for size in [PageSize::Size4K, PageSize::Size2M] {
                    let entry = leaf_entry(PhysAddr::new(0x20_0000), size, access, caching, 0);
                    assert!(!is_writable_and_executable(entry), "{access:?}");
                    assert_eq!(access_of(entry), Some(access));
                }
            }
        }
    }

    #[test]
    fn bits_are_the_architectural_ones() {
        let text = leaf_entry(
            PhysAddr::new(0x1234_5000),
            PageSize::Size4K,
            Access::ReadExecute,
            Caching::WriteBack,
            0,
        );
        assert_eq!(text, 0x1234_5001);
        let rodata = leaf_entry(
            PhysAddr::new(0x1000),
            PageSize::Size4K,
            Access::ReadOnly,
            Caching::WriteBack,
            0,
        );
        assert_eq!(rodata, 0x8000_0000_0000_1001);
        let data = leaf_entry(
            PhysAddr::new(0x1000),
            PageSize::Size2M,
            Access::ReadWrite,
            Caching::WriteBack,
            0,
        );
        assert_eq!(data, 0x8000_0000_0000_1083);
        let mmio = leaf_entry(
            PhysAddr::new(0xb000_0000),
            PageSize::Size2M,
            Access::ReadWrite,
            Caching::Uncached,
            0,
        );
        assert_eq!(mmio, 0x8000_0000_b000_009b);
        // The SNP C-bit (bit 51 on this EPYC) goes in as given; stray low bits of the frame don't.
        let private = leaf_entry(
            PhysAddr::new(0x1fff),
            PageSize::Size4K,
            Access::ReadWrite,
            Caching::WriteBack,
            1 << 51,
        );
        assert_eq!(private, (1 << 51) | (1 << 63) | 0x1003);
        assert_eq!(table_entry(PhysAddr::new(0x5000), 0), 0x5003);
    }

    #[test]
    fn decoding_refuses_write_execute() {
        assert_eq!(access_of(PRESENT | WRITABLE), None);
        assert!(is_writable_and_executable(PRESENT | WRITABLE));
        assert_eq!(access_of(WRITABLE | NO_EXECUTE), None);
    }
}
