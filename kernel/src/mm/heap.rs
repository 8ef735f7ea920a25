//! The kernel heap: `linked_list_allocator` over one contiguous physical range, reached through
//! the identity map, behind a spin lock. Heap memory is RW+NX like all of the identity map.

use crate::mm::address::PhysRange;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use linked_list_allocator::Heap;
use spin::Mutex;

struct LockedHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: LockedHeap = LockedHeap(Mutex::new(Heap::empty()));

// SAFETY: `Heap` hands out disjoint, correctly aligned blocks from memory given to it in
// `init`; the mutex serialises every access to its bookkeeping.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: the allocator contract: `ptr` came from `alloc` with this `layout`.
            unsafe { self.0.lock().deallocate(ptr, layout) };
        }
    }
}

/// Gives `range` to the heap.
///
/// # Safety
/// `range` must be identity-mapped RAM, read-write, used by nothing else, now and for good;
/// called once.
pub unsafe fn init(range: PhysRange) {
    // SAFETY: the caller hands over exclusive, mapped memory of that size.
    unsafe {
        HEAP.0
            .lock()
            .init(range.start.as_u64() as *mut u8, range.len() as usize)
    };
}

/// Bytes in use and bytes free.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.0.lock();
    (heap.used(), heap.free())
}
