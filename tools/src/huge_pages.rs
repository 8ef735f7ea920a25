//! The `ward` binary's allocator: large allocations (the engine's packed weights, KV caches) are
//! placed on 2 MiB boundaries and marked for transparent huge pages. Streaming the ~100 MB of
//! weights per decoded token through 4 KiB pages costs a TLB walk every 4 KiB; measured on the
//! development VM, a matrix-vector product over 70 MB ran at ~5-7 GB/s with 4 KiB pages and
//! ~19 GB/s with huge pages. Small allocations go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Huge page size on x86-64.
const HUGE_PAGE: usize = 2 << 20;

pub struct HugePageAllocator;

/// The layout actually requested from the system for a large `layout`.
fn huge_layout(layout: Layout) -> Option<Layout> {
    if layout.size() < HUGE_PAGE {
        return None;
    }
    let size = layout.size().checked_next_multiple_of(HUGE_PAGE)?;
    Layout::from_size_align(size, HUGE_PAGE.max(layout.align())).ok()
}

// SAFETY: every block comes from `System` with a layout derived deterministically from the
// caller's layout, and is returned to `System` with that same derived layout.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(huge) = huge_layout(layout) else {
            // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: `huge` has a non-zero size.
        let block = unsafe { System.alloc(huge) };
        if !block.is_null() {
            // SAFETY: `block` is a live allocation of `huge.size()` bytes on a page boundary;
            // MADV_HUGEPAGE only changes how the kernel backs it (failure is harmless).
            unsafe { libc::madvise(block.cast(), huge.size(), libc::MADV_HUGEPAGE) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match huge_layout(layout) {
            // SAFETY: `block` was allocated by `alloc` above with this same derived layout.
            Some(huge) => unsafe { System.dealloc(block, huge) },
            // SAFETY: `block` came from `System.alloc(layout)`.
            None => unsafe { System.dealloc(block, layout) },
        }
    }
}
