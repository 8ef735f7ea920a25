//! Host buffers for model weights backed by transparent huge pages: anonymous memory aligned to
//! 2 MiB and marked `madvise(MADV_HUGEPAGE)` before it is first touched, so the kernel backs it
//! with 2 MiB pages (on this machine THP is `madvise`-only). A decode step streams ~97 MB of
//! weights; with 4 KiB pages that is ~24 000 TLB misses per token, with 2 MiB pages ~50.
//! Measured here (`cargo run --release -p ward-tools --example hugepages_bandwidth`): see
//! that example's output for the read bandwidth with and without.
//!
//! Two ways in: [`HugePageAllocator`], the `ward` binary's global allocator, gives every large
//! allocation huge pages without the engine knowing; [`HugeBuffer`] is an explicit buffer whose
//! page advice can be chosen, for measuring the difference.
//!
//! If the kernel refuses the advice (THP `never`), memory still works with small pages;
//! [`HugeBuffer::huge_bytes`] tells which one you got.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::ptr::NonNull;

/// The huge page size the buffers are aligned to.
pub const HUGE_PAGE: usize = 2 << 20;

/// Which pages to ask the kernel for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageAdvice {
    /// `MADV_HUGEPAGE`: transparent huge pages.
    Huge,
    /// `MADV_NOHUGEPAGE`: 4 KiB pages only (for comparison).
    Small,
}

/// A zero-initialised, 2 MiB-aligned anonymous mapping (see the module documentation).
pub struct HugeBuffer {
    start: NonNull<u8>,
    len: usize,
    mapped: usize,
}

// SAFETY: the buffer owns its mapping exclusively, like a `Box<[u8]>`.
unsafe impl Send for HugeBuffer {}
// SAFETY: shared access only reads.
unsafe impl Sync for HugeBuffer {}

impl HugeBuffer {
    /// `len` zero bytes in transparent huge pages.
    pub fn zeroed(len: usize) -> io::Result<Self> {
        Self::with_advice(len, PageAdvice::Huge)
    }

    /// `len` zero bytes, with the given page advice.
    pub fn with_advice(len: usize, advice: PageAdvice) -> io::Result<Self> {
        let mapped = len
            .max(1)
            .checked_next_multiple_of(HUGE_PAGE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))?;
        let reserve = mapped + HUGE_PAGE;
        // SAFETY: an anonymous private mapping at an address of the kernel's choice; no
        // existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = raw as usize;
        let aligned = base.next_multiple_of(HUGE_PAGE);
        let (head, tail) = (aligned - base, reserve - (aligned - base) - mapped);
        // SAFETY: both ranges lie inside the mapping just made and outside the part kept.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + mapped) as *mut libc::c_void, tail);
            }
        }
        let advice = match advice {
            PageAdvice::Huge => libc::MADV_HUGEPAGE,
            PageAdvice::Small => libc::MADV_NOHUGEPAGE,
        };
        // SAFETY: advice on our own mapping; failure (THP disabled) only means small pages.
        unsafe { libc::madvise(aligned as *mut libc::c_void, mapped, advice) };
        Ok(Self {
            start: NonNull::new(aligned as *mut u8).ok_or_else(io::Error::last_os_error)?,
            len,
            mapped,
        })
    }

    /// The whole of `path` in transparent huge pages (e.g. a GGUF model).
    pub fn read_file(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        let mut buffer = Self::zeroed(len)?;
        file.read_exact(&mut buffer)?;
        Ok(buffer)
    }

    /// Bytes of this buffer the kernel currently backs with huge pages (from
    /// `/proc/self/smaps`), or `None` if that cannot be read.
    pub fn huge_bytes(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = self.start.as_ptr() as usize;
        let end = start + self.mapped;
        let mut inside = false;
        let mut total = 0u64;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((low, high)) = range.split_once('-')
                && let (Ok(low), Ok(high)) = (
                    usize::from_str_radix(low, 16),
                    usize::from_str_radix(high, 16),
                )
            {
                inside = low < end && start < high;
                continue;
            }
            if inside && let Some(value) = line.strip_prefix("AnonHugePages:") {
                let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
                total += kib * 1024;
            }
        }
        Some(total)
    }
}

impl Deref for HugeBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds `mapped >= len` readable bytes (zero until written).
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl DerefMut for HugeBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for HugeBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range this buffer owns.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.mapped) };
    }
}

/// The `ward` binary's global allocator: allocations of 2 MiB or more (the engine's packed
/// weights, KV caches) are placed on 2 MiB boundaries and marked `MADV_HUGEPAGE`; smaller ones go
/// to the system allocator unchanged. Measured on the development VM, a matrix-vector product
/// over 70 MB ran at ~5-7 GB/s with 4 KiB pages and ~19 GB/s with huge pages.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_writable_and_sized() {
        for len in [0, 1, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 5] {
            let mut buffer = HugeBuffer::zeroed(len).unwrap();
            assert_eq!(buffer.len(), len);
            assert_eq!(buffer.as_ptr() as usize % HUGE_PAGE, 0);
            assert!(buffer.iter().all(|&b| b == 0));
            if let Some(last) = buffer.last_mut() {
                *last = 7;
            }
            assert_eq!(buffer.last().copied(), (len > 0).then_some(7));
        }
    }

    #[test]
    fn reads_a_file_exactly() {
        let path = std::env::temp_dir().join(format!("ward-huge-{}", std::process::id()));
        let data: Vec<u8> = (0..HUGE_PAGE + 12_345).map(|i| (i * 31) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let buffer = HugeBuffer::read_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&*buffer, &data[..]);
    }

    #[test]
    fn huge_pages_are_used_when_the_kernel_allows_them() {
        let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        let mut buffer = HugeBuffer::zeroed(8 * HUGE_PAGE).unwrap();
        buffer.fill(1);
        let huge = buffer.huge_bytes().unwrap_or(0);
        if enabled.contains("[never]") {
            assert_eq!(huge, 0);
        } else {
            // Memory pressure can leave some pages small, but not all of them.
            assert!(
                huge >= HUGE_PAGE as u64,
                "no huge page among 16 MiB ({enabled})"
            );
        }
        let mut small = HugeBuffer::with_advice(8 * HUGE_PAGE, PageAdvice::Small).unwrap();
        small.fill(1);
        assert_eq!(small.huge_bytes(), Some(0));
    }
}
