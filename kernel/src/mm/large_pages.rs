//! Large private buffers for the model's weights: physically contiguous, 2 MiB aligned, a
//! whole number of 2 MiB pages, and mapped with 2 MiB pages read-write and never executable —
//! so a pass over the weights costs one TLB entry per 2 MiB instead of 512 (DESIGN §14,
//! issue 6: ~1.3–1.5× read bandwidth on this CPU).
//!
//! They come from the heap: the kernel identity-maps RAM with 2 MiB pages wherever a whole
//! aligned 2 MiB fits (`paging::mapper::PageTables::map_range`), and the heap is one identity-
//! mapped range, so a 2 MiB-aligned heap block is physically contiguous and large-page mapped.
//! [`LargeBuffer::allocate`] checks that in the live page tables rather than assuming it.
//! Like all heap memory the buffer is private (SNP C-bit set, TDX shared bit clear); it is
//! zeroed when allocated and wiped before it is freed, since it holds the decrypted model.

use core::fmt;

/// The large page size.
pub const LARGE_PAGE: usize = 2 << 20;

/// `bytes` rounded up to whole large pages (`None` on overflow; at least one page).
pub const fn large_pages_for(bytes: usize) -> Option<usize> {
    let bytes = if bytes == 0 { 1 } else { bytes };
    match bytes.checked_add(LARGE_PAGE - 1) {
        Some(padded) => Some(padded / LARGE_PAGE * LARGE_PAGE),
        None => None,
    }
}

/// Why a large buffer could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeBufferError {
    /// The size overflows.
    TooLarge(usize),
    /// The heap has no aligned block this big.
    OutOfMemory {
        /// Bytes asked for (rounded to large pages).
        bytes: usize,
    },
    /// Part of the block is not mapped by a 2 MiB read-write, non-executable page.
    NotLargePages {
        /// The first such address.
        address: u64,
    },
}

impl fmt::Display for LargeBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(bytes) => write!(f, "{bytes} bytes is too large a buffer"),
            Self::OutOfMemory { bytes } => {
                write!(
                    f,
                    "no 2 MiB-aligned block of {bytes} bytes left in the heap"
                )
            }
            Self::NotLargePages { address } => write!(
                f,
                "{address:#x} is not mapped by a 2 MiB read-write non-executable page"
            ),
        }
    }
}

#[cfg(target_os = "none")]
pub use buffer::LargeBuffer;

#[cfg(target_os = "none")]
mod buffer {
    use super::{LARGE_PAGE, LargeBufferError, large_pages_for};
    use crate::arch::paging::flags::{self, Access};
    use crate::arch::paging::mapper::{self, TableAccess};
    use crate::arch::registers::cr3;
    use crate::mm::address::{PhysAddr, VirtAddr};
    use core::alloc::Layout;
    use core::ops::{Deref, DerefMut};
    use core::ptr::NonNull;

    /// A large private buffer (see the module documentation). Dereferences to its `len()`
    /// bytes; the rest of its last large page is padding.
    pub struct LargeBuffer {
        start: NonNull<u8>,
        len: usize,
        layout: Layout,
    }

    // SAFETY: the buffer owns its memory exclusively, like a `Box<[u8]>`.
    unsafe impl Send for LargeBuffer {}
    // SAFETY: shared access only reads, like `&[u8]`.
    unsafe impl Sync for LargeBuffer {}

    struct LiveTables;

    impl TableAccess for LiveTables {
        fn table(&mut self, frame: PhysAddr) -> &mut [u64; 512] {
            // SAFETY: only frames of the live kernel tables (identity-mapped RAM) are walked;
            // the walk reads them.
            unsafe { &mut *(frame.as_u64() as *mut [u64; 512]) }
        }
    }

    impl LargeBuffer {
        /// A zeroed buffer of `len` bytes, checked to be large-page mapped. `private_mask` is
        /// the platform's private-memory PTE mask (stripped from table addresses in the walk).
        pub fn allocate(len: usize, private_mask: u64) -> Result<Self, LargeBufferError> {
            let bytes = large_pages_for(len).ok_or(LargeBufferError::TooLarge(len))?;
            let layout = Layout::from_size_align(bytes, LARGE_PAGE)
                .map_err(|_| LargeBufferError::TooLarge(len))?;
            // SAFETY: the layout has a non-zero size.
            let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
            let start = NonNull::new(raw).ok_or(LargeBufferError::OutOfMemory { bytes })?;
            let buffer = Self { start, len, layout };
            let root = PhysAddr::new(cr3() & flags::ADDRESS_MASK & !private_mask);
            for offset in (0..bytes).step_by(LARGE_PAGE) {
                let address = start.as_ptr() as u64 + offset as u64;
                let entry =
                    mapper::translate(&mut LiveTables, root, VirtAddr::new(address), private_mask);
                let large_rw_nx = entry.is_some_and(|(phys, leaf)| {
                    phys.as_u64() == address
                        && leaf & flags::HUGE_PAGE != 0
                        && flags::access_of(leaf) == Some(Access::ReadWrite)
                });
                if !large_rw_nx {
                    // `buffer` is dropped (wiped and freed) on the way out.
                    return Err(LargeBufferError::NotLargePages { address });
                }
            }
            Ok(buffer)
        }

        /// The physical (= identity-mapped virtual) address of the first byte.
        pub fn physical_start(&self) -> u64 {
            self.start.as_ptr() as u64
        }

        /// Bytes reserved, a multiple of 2 MiB.
        pub fn capacity(&self) -> usize {
            self.layout.size()
        }
    }

    impl Deref for LargeBuffer {
        type Target = [u8];

        fn deref(&self) -> &[u8] {
            // SAFETY: `start` points to `capacity() >= len` initialised (zeroed at allocation)
            // bytes owned by this buffer.
            unsafe { core::slice::from_raw_parts(self.start.as_ptr(), self.len) }
        }
    }

    impl DerefMut for LargeBuffer {
        fn deref_mut(&mut self) -> &mut [u8] {
            // SAFETY: as for `deref`, and `&mut self` makes the access exclusive.
            unsafe { core::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
        }
    }

    impl Drop for LargeBuffer {
        fn drop(&mut self) {
            // SAFETY: the whole block is owned by this buffer; volatile writes so the wipe of
            // the decrypted model is not optimised away before the memory is freed.
            unsafe {
                let base = self.start.as_ptr();
                for offset in (0..self.layout.size()).step_by(8) {
                    core::ptr::write_volatile(base.add(offset).cast::<u64>(), 0);
                }
                alloc::alloc::dealloc(base, self.layout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_whole_large_pages() {
        assert_eq!(large_pages_for(0), Some(LARGE_PAGE));
        assert_eq!(large_pages_for(1), Some(LARGE_PAGE));
        assert_eq!(large_pages_for(LARGE_PAGE), Some(LARGE_PAGE));
        assert_eq!(large_pages_for(LARGE_PAGE + 1), Some(2 * LARGE_PAGE));
        assert_eq!(large_pages_for(96_600_000), Some(47 * LARGE_PAGE));
        assert_eq!(large_pages_for(usize::MAX), None);
    }
}
