//! Builds the kernel's own page tables (see [`layout`](super::layout)) and switches to them.
//! Runs on the loader's tables, whose identity map of RAM lets it write new table frames and
//! find where the loader put each kernel page.

use super::flags::{Access, Caching};
use super::layout::{self, HIGH_MMIO, SHARED_WINDOW, Stack};
use super::mapper::{self, MapError, PageTables, TableAccess, TableFrames};
use crate::arch::registers::{self, CR0_WP, EFER_NXE, IA32_EFER};
use crate::drivers::pci::ecam::{Q35_ECAM_BASE, Q35_ECAM_SIZE};
use crate::mm::address::{PAGE_SIZE, PhysAddr, PhysRange, VirtAddr};
use crate::mm::frames::FrameAllocator;
use core::fmt;
use ward_bootinfo::MemoryRegion;

/// Why the kernel's address space could not be built.
#[derive(Clone, Copy, Debug)]
pub enum SpaceError {
    /// A mapping failed.
    Map(MapError),
    /// The linker symbols describe an impossible image.
    Image(layout::ImageLayoutError),
    /// A kernel page is not mapped by the loader.
    KernelPageMissing(VirtAddr),
    /// No frames left for a stack.
    OutOfFrames,
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Map(error) => write!(f, "{error}"),
            Self::Image(error) => write!(f, "kernel image layout: {error:?}"),
            Self::KernelPageMissing(v) => write!(f, "kernel page {v} is not mapped by the loader"),
            Self::OutOfFrames => f.write_str("out of frames for stacks"),
        }
    }
}

impl From<MapError> for SpaceError {
    fn from(error: MapError) -> Self {
        Self::Map(error)
    }
}

/// Page-table frames from the frame allocator, reached through the identity map.
struct IdentityFrames<'a> {
    frames: &'a mut FrameAllocator,
}

/// Reads any page table through the identity map (the loader's and ours).
struct IdentityTables;

fn identity_table<'a>(frame: PhysAddr) -> &'a mut [u64; 512] {
    // SAFETY: only called with frames that hold page tables — ours, allocated below and owned
    // by the tables, or the loader's, which nothing else references — and RAM is identity
    // mapped by both the loader's tables and ours.
    unsafe { &mut *(frame.as_u64() as *mut [u64; 512]) }
}

impl TableAccess for IdentityTables {
    fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
        identity_table(frame)
    }
}

impl TableAccess for IdentityFrames<'_> {
    fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
        identity_table(frame)
    }
}

impl TableFrames for IdentityFrames<'_> {
    fn allocate_table(&mut self) -> Option<PhysAddr> {
        let frame = self.frames.allocate(1)?.start;
        zero(PhysRange {
            start: frame,
            end: PhysAddr::new(frame.as_u64() + PAGE_SIZE),
        });
        Some(frame)
    }
}

/// Zeroes freshly allocated frames through the identity map.
fn zero(range: PhysRange) {
    // SAFETY: `range` was just taken from the frame allocator (free, identity-mapped RAM).
    unsafe { core::ptr::write_bytes(range.start.as_u64() as *mut u8, 0, range.len() as usize) };
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

fn symbol(address: &u8) -> VirtAddr {
    VirtAddr::new(core::ptr::from_ref(address) as u64)
}

/// What [`build`] made.
pub struct KernelSpace {
    /// The PML4, for CR3.
    pub root: PhysAddr,
}

/// Builds the kernel's tables: identity-mapped RAM (minus page 0, the kernel image and the
/// shared pool), the MMIO windows, the kernel image with per-segment permissions, every stack
/// from [`Stack::ALL`] with its guard, and the shared pool in its window.
pub fn build(
    regions: &[MemoryRegion],
    frames: &mut FrameAllocator,
    shared_pool: PhysRange,
    private_mask: u64,
    shared_mask: u64,
) -> Result<KernelSpace, SpaceError> {
    let mut tables = PageTables::new(IdentityFrames { frames }, private_mask)?;
    let page_zero = PhysRange {
        start: PhysAddr::new(0),
        end: PhysAddr::new(PAGE_SIZE),
    };
    for range in layout::identity_ranges(regions, &[page_zero, shared_pool]) {
        let virt = VirtAddr::new(range.start.as_u64());
        tables.map_range(
            virt,
            range.start,
            range.len(),
            Access::ReadWrite,
            Caching::WriteBack,
            private_mask,
        )?;
    }
    let ecam =
        PhysRange::from_start_len(PhysAddr::new(Q35_ECAM_BASE), Q35_ECAM_SIZE).unwrap_or_default();
    for window in [ecam, HIGH_MMIO] {
        let virt = VirtAddr::new(window.start.as_u64());
        tables.map_range(
            virt,
            window.start,
            window.len(),
            Access::ReadWrite,
            Caching::Uncached,
            shared_mask,
        )?;
    }

    // SAFETY: the symbols are defined by link.ld; only their addresses are taken.
    let segments = unsafe {
        layout::kernel_segments(
            (symbol(&__text_start), symbol(&__text_end)),
            (symbol(&__rodata_start), symbol(&__rodata_end)),
            (symbol(&__data_start), symbol(&__data_end)),
        )
    }
    .map_err(SpaceError::Image)?;
    let loader_root = PhysAddr::new(registers::cr3() & super::flags::ADDRESS_MASK & !private_mask);
    for segment in segments {
        let mut page = segment.start;
        while page < segment.end {
            let (phys, _) = mapper::translate(&mut IdentityTables, loader_root, page, private_mask)
                .ok_or(SpaceError::KernelPageMissing(page))?;
            tables.map(
                page,
                phys,
                super::flags::PageSize::Size4K,
                segment.access,
                Caching::WriteBack,
                private_mask,
            )?;
            page = VirtAddr::new(page.as_u64() + PAGE_SIZE);
        }
    }

    for stack in Stack::ALL {
        let frames = tables
            .frames_mut()
            .frames
            .allocate(stack.size() / PAGE_SIZE)
            .ok_or(SpaceError::OutOfFrames)?;
        zero(frames);
        tables.map_range(
            stack.bottom(),
            frames.start,
            stack.size(),
            Access::ReadWrite,
            Caching::WriteBack,
            private_mask,
        )?;
    }

    tables.map_range(
        VirtAddr::new(SHARED_WINDOW),
        shared_pool.start,
        shared_pool.len(),
        Access::ReadWrite,
        Caching::WriteBack,
        shared_mask,
    )?;
    Ok(KernelSpace {
        root: tables.root(),
    })
}

/// Turns on NX enforcement and supervisor write protection, then loads `space`.
///
/// # Safety
/// `space` must come from [`build`] (it maps the running code, the current stack through the
/// identity map, and everything the kernel touches next).
pub unsafe fn activate(space: &KernelSpace) {
    // SAFETY: EFER exists on every x86-64 CPU; NXE only makes the NX bit take effect, which the
    // loader's tables already rely on.
    unsafe { registers::wrmsr(IA32_EFER, registers::rdmsr(IA32_EFER) | EFER_NXE) };
    // SAFETY: setting WP only makes read-only pages read-only for the kernel too.
    unsafe { registers::set_cr0(registers::cr0() | CR0_WP) };
    // SAFETY: the caller guarantees the tables map everything in use.
    unsafe { registers::set_cr3(space.root.as_u64()) };
}

/// Classifies every mapping of `space` (see [`mapper::audit`]).
pub fn audit(space: &KernelSpace, private_mask: u64) -> mapper::Audit {
    mapper::audit(&mut IdentityTables, space.root, private_mask)
}
