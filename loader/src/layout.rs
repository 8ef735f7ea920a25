//! Fixed physical addresses the loader works with, shared by the boot assembly, the Rust loader,
//! the image packer and the SEV/TDX metadata (docs/image-format.md has the same table).
//!
//! The loader owns one working area, `[1 MiB, 2 MiB)`: it is the only RAM it touches before it
//! knows the memory map, so it is the RAM that SNP pre-validates (`SNP_SEC_MEM`) and TDX adds as
//! `TEMP_MEM` before the first instruction runs. The kernel is placed at 2 MiB or above.

/// A 4 KiB page.
pub const PAGE_SIZE: u64 = 0x1000;
/// A 2 MiB large page.
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;
/// A 1 GiB huge page.
pub const HUGE_PAGE_SIZE: u64 = 0x4000_0000;

/// One past the last byte of the firmware image: the image always ends at 4 GiB.
pub const IMAGE_END: u64 = 0x1_0000_0000;
/// The image size is a non-zero multiple of this (QEMU's `-bios` rule).
pub const IMAGE_GRANULE: u64 = 0x1_0000;
/// Largest image: above this the image would overlap the IOAPIC/HPET/LAPIC range.
pub const IMAGE_MAX_SIZE: u64 = 16 << 20;
/// The image's last page belongs to the packer: GUID table, SEV and TDX metadata. Only its last
/// [`RESET_AREA_SIZE`] bytes come from the loader (AP parking loop and reset vector).
pub const METADATA_PAGE: u64 = IMAGE_END - PAGE_SIZE;
/// Bytes at the very top of the image holding the AP parking loop and the reset vector.
pub const RESET_AREA_SIZE: u64 = 0x20;
/// Where application processors park (the SEV-ES reset block points here).
pub const AP_PARK_ADDRESS: u64 = IMAGE_END - RESET_AREA_SIZE;

/// Start of the loader's working area.
pub const LOADER_AREA_START: u64 = 0x10_0000;
/// End (exclusive) of the loader's working area.
pub const LOADER_AREA_END: u64 = 0x20_0000;

/// Boot page tables built by the assembly: PML4, PDPT and four page directories identity-mapping
/// the first 4 GiB with 2 MiB pages (enough for the loader until it builds the real tables).
pub const BOOT_PML4: u64 = 0x10_0000;
/// The boot PDPT.
pub const BOOT_PDPT: u64 = 0x10_1000;
/// The first of the four boot page directories.
pub const BOOT_PD0: u64 = 0x10_2000;
/// End of the boot page tables.
pub const BOOT_TABLES_END: u64 = 0x10_6000;
/// SEV-SNP secrets page (filled by the SNP firmware at launch).
pub const SNP_SECRETS_PAGE: u64 = 0x10_6000;
/// SEV-SNP CPUID page (filled by the hypervisor, checked by the SNP firmware).
pub const SNP_CPUID_PAGE: u64 = 0x10_7000;
/// TDX TD HOB (filled by the VMM before launch).
pub const TD_HOB_START: u64 = 0x10_8000;
/// Size of the TD HOB area.
pub const TD_HOB_SIZE: u64 = 0x8000;
/// The loader's `.data` and `.bss` (the linker script places them here).
pub const LOADER_DATA_START: u64 = 0x11_0000;
/// End of the loader's `.data` and `.bss`.
pub const LOADER_DATA_END: u64 = 0x12_0000;
/// The [`ward_bootinfo::BootInfo`] handed to the kernel.
pub const BOOT_INFO_ADDRESS: u64 = 0x12_0000;
/// Room reserved for the BootInfo.
pub const BOOT_INFO_AREA_SIZE: u64 = 0x1_0000;
/// Private copy of the deployment configuration.
pub const CONFIG_ADDRESS: u64 = 0x13_0000;
/// Largest deployment configuration accepted (its whole area).
pub const CONFIG_MAX_SIZE: u64 = 0x1_0000;
/// Bottom of the loader stack, which is also the kernel's stack at hand-over.
pub const STACK_BOTTOM: u64 = 0x14_0000;
/// Top of the stack (exclusive; 16-byte aligned): 128 KiB.
pub const STACK_TOP: u64 = 0x16_0000;
/// Pool the final page tables are allocated from.
pub const PAGE_TABLE_POOL_START: u64 = 0x16_0000;
/// End of the page-table pool.
pub const PAGE_TABLE_POOL_END: u64 = LOADER_AREA_END;

/// The kernel's physical copy starts at or above this address, aligned to it.
pub const KERNEL_PHYSICAL_ALIGN: u64 = LARGE_PAGE_SIZE;
/// Lowest physical address the kernel may be placed at.
pub const KERNEL_PHYSICAL_MIN: u64 = 0x20_0000;
/// The kernel's virtual addresses all lie at or above this (the top 2 GiB).
pub const KERNEL_VIRTUAL_BASE: u64 = 0xFFFF_FFFF_8000_0000;

/// Legacy VGA and option-ROM hole: never usable RAM, whatever e820 says.
pub const LEGACY_HOLE_START: u64 = 0xA_0000;
/// End of the legacy hole.
pub const LEGACY_HOLE_END: u64 = 0x10_0000;

// The BootInfo fits its area, the stack top is SysV-aligned, the kernel starts above the loader.
const _: () = {
    assert!(core::mem::size_of::<ward_bootinfo::BootInfo>() as u64 <= BOOT_INFO_AREA_SIZE);
    assert!(STACK_TOP.is_multiple_of(16));
    assert!(LOADER_AREA_END <= KERNEL_PHYSICAL_MIN);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_area_pieces_tile_without_overlap() {
        let pieces = [
            (BOOT_PML4, BOOT_TABLES_END),
            (SNP_SECRETS_PAGE, SNP_SECRETS_PAGE + PAGE_SIZE),
            (SNP_CPUID_PAGE, SNP_CPUID_PAGE + PAGE_SIZE),
            (TD_HOB_START, TD_HOB_START + TD_HOB_SIZE),
            (LOADER_DATA_START, LOADER_DATA_END),
            (BOOT_INFO_ADDRESS, BOOT_INFO_ADDRESS + BOOT_INFO_AREA_SIZE),
            (CONFIG_ADDRESS, CONFIG_ADDRESS + CONFIG_MAX_SIZE),
            (STACK_BOTTOM, STACK_TOP),
            (PAGE_TABLE_POOL_START, PAGE_TABLE_POOL_END),
        ];
        assert_eq!(pieces[0].0, LOADER_AREA_START);
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "gap or overlap at {:#x}", pair[0].1);
        }
        assert_eq!(pieces[pieces.len() - 1].1, LOADER_AREA_END);
        for (start, end) in pieces {
            assert_eq!(start % PAGE_SIZE, 0);
            assert_eq!(end % PAGE_SIZE, 0);
        }
    }
}
