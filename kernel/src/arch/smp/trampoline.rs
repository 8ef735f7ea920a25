//! The real-mode start-up trampoline (`trampoline.s`) and the temporary page tables it enters
//! long mode with, in fixed pages below 1 MiB (a start-up IPI can only point below 1 MiB).
//!
//! | page | what |
//! | --- | --- |
//! | [`TRAMPOLINE_PAGE`] | code, then the parameters at [`DATA`] |
//! | the four after it | temporary PML4, PDPT, PD, PT |
//!
//! The temporary tables map only the trampoline page (read+execute, at its own address) in
//! the lower half and share the kernel's upper half (PML4 entries 256–511 copied), so the AP
//! can jump to `ward_ap_long_mode` in kernel text, which loads the kernel's CR3. The pages
//! are never reused: a start-up IPI that arrives late still finds the code it expects.

#[cfg(target_os = "none")]
use super::super::paging::flags::{Access, Caching, PageSize};
#[cfg(target_os = "none")]
use super::super::paging::mapper::{PageTables, TableAccess, TableFrames};
use crate::mm::address::PAGE_SIZE;
#[cfg(target_os = "none")]
use crate::mm::address::{PhysAddr, VirtAddr};
use core::fmt;
use ward_bootinfo::{MemoryKind, MemoryRegion};

/// Physical page of the trampoline (start-up IPI vector 0x08).
pub const TRAMPOLINE_PAGE: u64 = 0x8000;
/// Pages used from [`TRAMPOLINE_PAGE`] on: the trampoline and four page tables.
pub const PAGES: u64 = 5;
/// Offset of the parameter block in the trampoline page.
pub const DATA: u64 = 0xf00;

// The parameter block's fields (their users are bare-metal only; the host tests check the
// layout).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const GDT: u64 = DATA;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const GDTR: u64 = DATA + 0x20;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ALIVE: u64 = DATA + 0x28;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const TEMP_CR3: u64 = DATA + 0x2c;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const CR0: u64 = DATA + 0x30;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const CR4: u64 = DATA + 0x38;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const KERNEL_CR3: u64 = DATA + 0x40;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ENTRY: u64 = DATA + 0x48;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const STACK: u64 = DATA + 0x50;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ARGUMENT: u64 = DATA + 0x58;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const XCR0: u64 = DATA + 0x60;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const DATA_END: u64 = DATA + 0x68;

const _: () = assert!(DATA_END <= PAGE_SIZE);

/// Null, 32-bit code (0x08), flat data (0x10), 64-bit code (0x18). The accessed bits are
/// preset: once paging is on the page is read-only, and a CPU setting the bit on a segment load
/// would fault.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const GDT_ENTRIES: [u64; 4] = [
    0,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00af_9b00_0000_ffff,
];

#[cfg(target_os = "none")]
core::arch::global_asm!(
    include_str!("trampoline.s"),
    page = const TRAMPOLINE_PAGE,
    alive = const ALIVE,
    gdtr = const GDTR,
    temp_cr3 = const TEMP_CR3,
    cr0 = const CR0,
    cr4 = const CR4,
    xcr0 = const XCR0,
    argument = const ARGUMENT,
    kernel_cr3 = const KERNEL_CR3,
    stack = const STACK,
    entry = const ENTRY,
);

/// Why the trampoline cannot be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The pages are not usable RAM in the memory map.
    PagesNotUsable,
    /// The assembled code does not fit below the parameter block.
    CodeTooLarge(usize),
    /// Building the temporary tables failed.
    Tables,
}

impl fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PagesNotUsable => write!(
                f,
                "pages {TRAMPOLINE_PAGE:#x}..{:#x} are not usable RAM",
                TRAMPOLINE_PAGE + PAGES * PAGE_SIZE
            ),
            Self::CodeTooLarge(len) => write!(f, "trampoline code is {len} bytes, over {DATA}"),
            Self::Tables => f.write_str("temporary page tables could not be built"),
        }
    }
}

/// Whether `[start, start + PAGES pages)` lies inside one usable region.
pub fn pages_usable(regions: &[MemoryRegion]) -> bool {
    let (start, end) = (TRAMPOLINE_PAGE, TRAMPOLINE_PAGE + PAGES * PAGE_SIZE);
    regions.iter().any(|r| {
        MemoryKind::from_raw(r.kind) == Some(MemoryKind::Usable)
            && r.start <= start
            && r.start.checked_add(r.length).is_some_and(|e| e >= end)
    })
}

/// The fixed pages after the trampoline, handed out in order as page tables.
#[cfg(target_os = "none")]
struct LowTables {
    next: u64,
}

#[cfg(target_os = "none")]
impl TableAccess for LowTables {
    fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
        // SAFETY: only the fixed low pages (identity-mapped RAM reserved for this purpose, see
        // `pages_usable`) are handed out as tables here.
        unsafe { &mut *(frame.as_u64() as *mut [u64; 512]) }
    }
}

#[cfg(target_os = "none")]
impl TableFrames for LowTables {
    fn allocate_table(&mut self) -> Option<PhysAddr> {
        if self.next >= TRAMPOLINE_PAGE + PAGES * PAGE_SIZE {
            return None;
        }
        let frame = PhysAddr::new(self.next);
        self.next += PAGE_SIZE;
        self.table(frame).fill(0);
        Some(frame)
    }
}

/// The installed trampoline.
#[cfg(target_os = "none")]
pub struct Trampoline {
    _installed: (),
}

#[cfg(target_os = "none")]
fn write_u64(offset: u64, value: u64) {
    // SAFETY: `offset` is inside the trampoline page's parameter block, identity-mapped RAM
    // owned by the trampoline; unaligned writes are fine on x86.
    unsafe { core::ptr::write_unaligned((TRAMPOLINE_PAGE + offset) as *mut u64, value) };
}

#[cfg(target_os = "none")]
fn write_u32(offset: u64, value: u32) {
    // SAFETY: as for `write_u64`; volatile so the AP's view is not reordered away.
    unsafe { core::ptr::write_volatile((TRAMPOLINE_PAGE + offset) as *mut u32, value) };
}

#[cfg(target_os = "none")]
fn read_u32(offset: u64) -> u32 {
    // SAFETY: as for `write_u64`; the volatile read sees the AP's real-mode write.
    unsafe { core::ptr::read_volatile((TRAMPOLINE_PAGE + offset) as *const u32) }
}

#[cfg(target_os = "none")]
impl Trampoline {
    /// Copies the code, writes the boot CPU's CR0/CR4/XCR0, the kernel's CR3 and the entry,
    /// and builds the temporary tables. `private_mask` is ORed into the temporary tables' entries.
    pub fn install(regions: &[MemoryRegion], private_mask: u64) -> Result<Self, TrampolineError> {
        use super::super::paging::flags::ADDRESS_MASK;
        use super::super::registers::{cr0, cr3};
        unsafe extern "C" {
            static ward_ap_trampoline_start: u8;
            static ward_ap_trampoline_end: u8;
            fn ward_ap_long_mode();
        }
        if !pages_usable(regions) {
            return Err(TrampolineError::PagesNotUsable);
        }
        let start = &raw const ward_ap_trampoline_start;
        let end = &raw const ward_ap_trampoline_end;
        let length = end as usize - start as usize;
        if length as u64 > DATA {
            return Err(TrampolineError::CodeTooLarge(length));
        }
        // SAFETY: the code lies between the two symbols in the kernel's rodata; the target page
        // is identity-mapped usable RAM below 1 MiB that nothing else uses (checked above), and
        // the two do not overlap.
        unsafe {
            core::ptr::write_bytes(TRAMPOLINE_PAGE as *mut u8, 0, PAGE_SIZE as usize);
            core::ptr::copy_nonoverlapping(start, TRAMPOLINE_PAGE as *mut u8, length);
        }
        for (index, entry) in GDT_ENTRIES.iter().enumerate() {
            write_u64(GDT + 8 * index as u64, *entry);
        }
        let gdtr = ((TRAMPOLINE_PAGE + GDT) << 16) | (8 * GDT_ENTRIES.len() as u64 - 1);
        write_u64(GDTR, gdtr);
        write_u64(CR0, cr0());
        write_u64(CR4, cr4());
        write_u64(XCR0, xcr0());
        write_u64(KERNEL_CR3, cr3());
        write_u64(ENTRY, ward_ap_long_mode as *const () as u64);

        let kernel_root = cr3() & ADDRESS_MASK & !private_mask;
        let mut tables = PageTables::new(
            LowTables {
                next: TRAMPOLINE_PAGE + PAGE_SIZE,
            },
            private_mask,
        )
        .map_err(|_| TrampolineError::Tables)?;
        tables
            .map(
                VirtAddr::new(TRAMPOLINE_PAGE),
                PhysAddr::new(TRAMPOLINE_PAGE),
                PageSize::Size4K,
                Access::ReadExecute,
                Caching::WriteBack,
                private_mask,
            )
            .map_err(|_| TrampolineError::Tables)?;
        let root = tables.root();
        let mut access = tables.into_frames();
        // SAFETY: the kernel's PML4 is identity-mapped RAM that only page-table code touches;
        // it is read here, not modified.
        let kernel_pml4 = unsafe { &*(kernel_root as *const [u64; 512]) };
        let upper = &kernel_pml4[256..];
        access.table(root)[256..].copy_from_slice(upper);
        // Loaded in 32-bit mode: 32 bits, and the root is a low page.
        write_u32(TEMP_CR3, root.as_u64() as u32);
        Ok(Self { _installed: () })
    }

    /// The start-up IPI vector: the trampoline's page number.
    pub fn vector(&self) -> u8 {
        (TRAMPOLINE_PAGE >> 12) as u8
    }

    /// Sets the stack and argument for the next AP to start, and clears the alive flag.
    pub fn prepare(&self, stack_top: VirtAddr, argument: u64) {
        write_u64(STACK, stack_top.as_u64());
        write_u64(ARGUMENT, argument);
        write_u32(ALIVE, 0);
    }
}

/// Whether an AP has started executing the trampoline since [`Trampoline::prepare`].
#[cfg(target_os = "none")]
pub fn alive() -> bool {
    read_u32(ALIVE) != 0
}

#[cfg(target_os = "none")]
fn cr4() -> u64 {
    let value;
    // SAFETY: reading CR4 has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

#[cfg(target_os = "none")]
fn xcr0() -> u64 {
    const CR4_OSXSAVE: u64 = 1 << 18;
    if cr4() & CR4_OSXSAVE == 0 {
        return 0;
    }
    // SAFETY: CR4.OSXSAVE is set, so XGETBV with ECX = 0 is defined and only reads XCR0.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, length: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion {
            start,
            length,
            kind: kind as u32,
            reserved: 0,
        }
    }

    #[test]
    fn low_pages_must_be_usable_ram() {
        assert!(pages_usable(&[region(0, 0x9fc00, MemoryKind::Usable)]));
        assert!(!pages_usable(&[region(0, 0x9fc00, MemoryKind::Reserved)]));
        assert!(!pages_usable(&[region(0, 0xa000, MemoryKind::Usable)]));
        assert!(!pages_usable(&[
            region(0, 0xa000, MemoryKind::Usable),
            region(0xa000, 0x10000, MemoryKind::Usable)
        ]));
        assert_eq!(GDTR, GDT + 8 * GDT_ENTRIES.len() as u64);
    }
}
