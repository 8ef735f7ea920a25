//! The shared-memory pool (DESIGN §6): the only pages the host may read and write. Device I/O is
//! bounced through it: drivers allocate a [`SharedBuffer`] in page units and move bytes with
//! [`SharedBuffer::copy_in`] / [`SharedBuffer::copy_out`]. No `&T` or `&[u8]` into the pool is
//! ever made — the host can change these bytes at any moment, so Rust references to them would
//! be unsound and a check made on them could be undone after it. Data copied out is private and
//! is what callers validate.
//!
//! The pool's pages are made shared through the [`Platform`](crate::platform::Platform) once, at
//! start, and are mapped only in the shared window, never in the private identity map (on SNP
//! and TDX an alias with the other encryption state would be unsafe).

pub mod bitmap;

use crate::mm::address::{PAGE_SIZE, PhysAddr};
use bitmap::{FreeError, PageBitmap};
use core::fmt;
use core::ptr::NonNull;
use spin::Mutex;

/// Why a pool operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Not enough contiguous free pages.
    Exhausted {
        /// Pages asked for.
        pages: usize,
    },
    /// A copy would run past the buffer.
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        length: usize,
        /// Buffer size.
        size: usize,
    },
    /// A free of pages the pool did not hand out.
    BadFree(FreeError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { pages } => {
                write!(f, "shared pool has no {pages} free contiguous pages")
            }
            Self::OutOfBounds {
                offset,
                length,
                size,
            } => {
                write!(
                    f,
                    "copy of {length} bytes at offset {offset} exceeds the {size}-byte buffer"
                )
            }
            Self::BadFree(error) => write!(f, "bad shared-pool free: {error:?}"),
        }
    }
}

/// A pool of host-visible pages, `pages` long, mapped at `base` and at physical `phys`.
pub struct SharedPool {
    base: NonNull<u8>,
    phys: PhysAddr,
    pages: Mutex<PageBitmap>,
}

// SAFETY: the pool only hands out disjoint page ranges (the bitmap is behind a lock) and never
// makes references into the pages; moving or sharing the handle between CPUs is therefore fine.
unsafe impl Send for SharedPool {}
// SAFETY: as above; all mutation of the bookkeeping goes through the mutex.
unsafe impl Sync for SharedPool {}

impl SharedPool {
    /// Takes over `pages` pages mapped read-write at `base` and living at physical `phys`.
    ///
    /// # Safety
    /// `[base, base + pages * 4096)` must be mapped read-write for the pool's whole lifetime, be
    /// used by nothing else, and correspond to `[phys, ...)` as devices see it.
    pub unsafe fn new(base: NonNull<u8>, phys: PhysAddr, pages: usize) -> Self {
        Self {
            base,
            phys,
            pages: Mutex::new(PageBitmap::new(pages)),
        }
    }

    /// Pages in the pool.
    pub fn capacity(&self) -> usize {
        self.pages.lock().capacity()
    }

    /// Pages free now.
    pub fn free_pages(&self) -> usize {
        self.pages.lock().free_pages()
    }

    /// Physical start of the pool.
    pub fn phys_start(&self) -> PhysAddr {
        self.phys
    }

    /// A zeroed buffer of `pages` contiguous pages, returned to the pool when dropped.
    pub fn allocate(&self, pages: usize) -> Result<SharedBuffer<'_>, PoolError> {
        let first = self
            .pages
            .lock()
            .allocate(pages)
            .ok_or(PoolError::Exhausted { pages })?;
        let offset = first * PAGE_SIZE as usize;
        // SAFETY: `first + pages` is within the pool (the bitmap checked it), so the offset
        // stays inside the mapping given to `new`.
        let ptr = unsafe { self.base.add(offset) };
        let buffer = SharedBuffer {
            pool: self,
            ptr,
            phys: PhysAddr::new(self.phys.as_u64() + offset as u64),
            first,
            pages,
        };
        // SAFETY: the pages were just allocated to this buffer alone and are mapped writable.
        unsafe { ptr.as_ptr().write_bytes(0, buffer.len()) };
        Ok(buffer)
    }

    fn release(&self, first: usize, pages: usize) -> Result<(), PoolError> {
        self.pages
            .lock()
            .free(first, pages)
            .map_err(PoolError::BadFree)
    }
}

/// Host-visible pages owned by one user of the pool.
pub struct SharedBuffer<'pool> {
    pool: &'pool SharedPool,
    ptr: NonNull<u8>,
    phys: PhysAddr,
    first: usize,
    pages: usize,
}

impl SharedBuffer<'_> {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE as usize
    }

    /// Always false: buffers hold at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The address a device uses for this buffer.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// The kernel's pointer to the buffer, for code (such as a virtio `Hal`) that hands raw
    /// pointers on. Never turn it into a reference.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn check(&self, offset: usize, length: usize) -> Result<(), PoolError> {
        match offset.checked_add(length) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(PoolError::OutOfBounds {
                offset,
                length,
                size: self.len(),
            }),
        }
    }

    /// Copies private `data` into the buffer at `offset`.
    pub fn copy_in(&self, offset: usize, data: &[u8]) -> Result<(), PoolError> {
        self.check(offset, data.len())?;
        // SAFETY: bounds checked above; the destination is this buffer's own shared pages and
        // the source is private memory, so they do not overlap. Concurrent host writes can only
        // change bytes the host could have changed anyway.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .copy_from_nonoverlapping(data.as_ptr(), data.len())
        };
        Ok(())
    }

    /// Copies bytes at `offset` out into private `data`; validate them there.
    pub fn copy_out(&self, offset: usize, data: &mut [u8]) -> Result<(), PoolError> {
        self.check(offset, data.len())?;
        // SAFETY: bounds checked above; the source is this buffer's shared pages, the
        // destination private memory. The host may change the source during the copy: the
        // caller only ever looks at (and validates) the private copy.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .copy_to_nonoverlapping(data.as_mut_ptr(), data.len())
        };
        Ok(())
    }
}

impl Drop for SharedBuffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffer still owns its pages; scrub them so nothing private that was
        // bounced through them lingers for the host to read later.
        unsafe { self.ptr.as_ptr().write_bytes(0, self.len()) };
        // The handle came from this pool and frees exactly its pages once, so this cannot fail.
        let _ = self.pool.release(self.first, self.pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn buffers_copy_in_and_out_within_bounds() {
        let mut backing = vec![0xaau8; 8 * 4096];
        let base = NonNull::new(backing.as_mut_ptr()).unwrap();
        // SAFETY: `backing` outlives the pool and nothing else touches it.
        let pool = unsafe { SharedPool::new(base, PhysAddr::new(0x100_0000), 8) };
        let a = pool.allocate(2).unwrap();
        let b = pool.allocate(1).unwrap();
        assert_eq!(a.phys(), PhysAddr::new(0x100_0000));
        assert_eq!(b.phys(), PhysAddr::new(0x100_2000));
        assert_eq!(a.len(), 8192);
        let mut out = [0xffu8; 4];
        a.copy_out(0, &mut out).unwrap();
        assert_eq!(out, [0; 4], "fresh buffers are zeroed");
        a.copy_in(8190, &[1, 2]).unwrap();
        a.copy_out(8189, &mut out[..3]).unwrap();
        assert_eq!(&out[..3], &[0, 1, 2]);
        assert_eq!(
            a.copy_in(8191, &[1, 2]),
            Err(PoolError::OutOfBounds {
                offset: 8191,
                length: 2,
                size: 8192
            })
        );
        assert!(a.copy_out(usize::MAX, &mut out).is_err());
        assert_eq!(pool.free_pages(), 5);
        assert_eq!(
            pool.allocate(6).err(),
            Some(PoolError::Exhausted { pages: 6 })
        );
        drop(a);
        assert_eq!(pool.free_pages(), 7);
        let c = pool.allocate(2).unwrap();
        assert_eq!(c.phys(), PhysAddr::new(0x100_0000));
        let mut scrubbed = [0xffu8; 2];
        c.copy_out(8190, &mut scrubbed).unwrap();
        assert_eq!(scrubbed, [0, 0], "freed buffers are scrubbed");
        drop(b);
        drop(c);
        assert_eq!(pool.free_pages(), 8);
    }
}
