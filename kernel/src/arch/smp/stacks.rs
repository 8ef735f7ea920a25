//! Maps an application processor's stacks (kernel stack and the five IST stacks, each with the
//! unmapped guard below it, see [`Stack::top_on`]) into the live kernel tables, with frames
//! from the boot frame allocator (or, once that runs dry, page-aligned heap blocks, which are
//! identity-mapped RAM too and are never freed).

use crate::arch::paging::flags::{ADDRESS_MASK, Access, Caching};
use crate::arch::paging::layout::Stack;
use crate::arch::paging::mapper::{MapError, PageTables, TableAccess, TableFrames};
use crate::arch::registers::cr3;
use crate::boot::FRAMES;
use crate::mm::address::{PAGE_SIZE, PhysAddr, PhysRange};
use core::alloc::Layout;

/// Frames for page tables and stacks: the boot frame allocator first, then the heap.
struct StackFrames;

fn take(pages: u64) -> Option<PhysRange> {
    if let Some(range) = FRAMES.lock().as_mut().and_then(|f| f.allocate(pages)) {
        return Some(range);
    }
    let bytes = usize::try_from(pages * PAGE_SIZE).ok()?;
    let layout = Layout::from_size_align(bytes, PAGE_SIZE as usize).ok()?;
    // SAFETY: the layout has a non-zero size; the block is leaked on purpose (stacks and page
    // tables live forever) and is identity-mapped, so its address is its physical address.
    let block = unsafe { alloc::alloc::alloc(layout) };
    (!block.is_null()).then(|| PhysRange {
        start: PhysAddr::new(block as u64),
        end: PhysAddr::new(block as u64 + pages * PAGE_SIZE),
    })
}

fn zero(range: PhysRange) {
    // SAFETY: `range` was just taken (free, identity-mapped RAM owned by the caller).
    unsafe { core::ptr::write_bytes(range.start.as_u64() as *mut u8, 0, range.len() as usize) };
}

impl TableAccess for StackFrames {
    fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
        // SAFETY: only page-table frames of the kernel's tables reach here, identity-mapped;
        // the boot CPU is the only one changing the tables (before each AP starts).
        unsafe { &mut *(frame.as_u64() as *mut [u64; 512]) }
    }
}

impl TableFrames for StackFrames {
    fn allocate_table(&mut self) -> Option<PhysAddr> {
        let range = take(1)?;
        zero(range);
        Some(range.start)
    }
}

/// Maps every stack of CPU `cpu` (≥ 1). New entries only fill non-present slots, so CPUs
/// already running need no TLB flush.
pub fn map_for_cpu(cpu: usize, private_mask: u64) -> Result<(), MapError> {
    let root = PhysAddr::new(cr3() & ADDRESS_MASK & !private_mask);
    let mut tables = PageTables::open(StackFrames, root, private_mask);
    for stack in Stack::ALL {
        let bytes = stack.size_on(cpu);
        let frames = take(bytes / PAGE_SIZE).ok_or(MapError::OutOfFrames)?;
        zero(frames);
        tables.map_range(
            stack.bottom_on(cpu),
            frames.start,
            bytes,
            Access::ReadWrite,
            Caching::WriteBack,
            private_mask,
        )?;
    }
    Ok(())
}
