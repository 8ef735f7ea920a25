//! The loader has no heap. The SNP guest-protocol library it shares with the kernel
//! (`ward-attestation`) links `alloc`, which requires a global allocator; this one refuses every
//! request, so an allocation — which no loader path makes — ends in the allocation-error panic
//! (logged, then the usual failure exit) instead of touching memory nobody reserved.

use core::alloc::{GlobalAlloc, Layout};

struct NoHeap;

// SAFETY: `alloc` never hands out memory (null is the documented failure value), so no
// allocation can overlap another, and `dealloc` is only ever called for pointers `alloc`
// returned, of which there are none.
unsafe impl GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static NO_HEAP: NoHeap = NoHeap;
