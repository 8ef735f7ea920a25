//! A bounds-checked window of device registers. Accesses are single MOVs (`arch::mmio`, so the
//! SNP/TDX MMIO emulation can decode them) and naturally aligned;
//! an access outside the window reads as all-ones and writes nothing, so a bad offset computed
//! from a device value can never reach other memory.

use crate::arch::mmio::Register;
use core::ptr::NonNull;

/// `len` bytes of device registers at `base`.
#[derive(Debug)]
pub struct MmioRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is device registers, not memory shared with other Rust code; any CPU may
// access them (the owner serializes use through `&mut`/ownership).
unsafe impl Send for MmioRegion {}

impl MmioRegion {
    /// Wraps `len` bytes of registers at `base`.
    ///
    /// # Safety
    /// `[base, base + len)` must be mapped device memory (uncached) for the region's lifetime and
    /// used by nothing else that assumes it is ordinary memory.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pointer<T>(&self, offset: usize) -> Option<*mut T> {
        let size = core::mem::size_of::<T>();
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(size) {
            return None;
        }
        // SAFETY: `offset + size <= len`, inside the region given to `new`.
        let address = unsafe { self.base.as_ptr().add(offset) };
        // `size` alignment relative to a base that `new`'s callers keep at least 4 KiB aligned
        // for BARs and 4-byte aligned for capabilities; recheck to be sure.
        address.cast::<T>().is_aligned().then_some(address.cast())
    }

    /// Reads a register; all-ones when `offset` is outside or misaligned.
    pub fn read<T: Register + AllOnes>(&self, offset: usize) -> T {
        match self.pointer::<T>(offset) {
            // SAFETY: an aligned address inside the mapped register window.
            Some(pointer) => unsafe { T::load(pointer) },
            None => T::ALL_ONES,
        }
    }

    /// Writes a register; nothing when `offset` is outside or misaligned. Returns whether it
    /// wrote.
    pub fn write<T: Register>(&mut self, offset: usize, value: T) -> bool {
        match self.pointer::<T>(offset) {
            Some(pointer) => {
                // SAFETY: an aligned address inside the mapped register window.
                unsafe { T::store(pointer, value) };
                true
            }
            None => false,
        }
    }
}

/// Register widths and their "no device" value.
pub trait AllOnes {
    /// All bits set.
    const ALL_ONES: Self;
}

impl AllOnes for u8 {
    const ALL_ONES: Self = u8::MAX;
}
impl AllOnes for u16 {
    const ALL_ONES: Self = u16::MAX;
}
impl AllOnes for u32 {
    const ALL_ONES: Self = u32::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_stay_inside() {
        let mut backing = [0u32; 4];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` outlives the region and stands in for registers.
        let mut region = unsafe { MmioRegion::new(base, 16) };
        assert!(region.write::<u32>(12, 0xdead_beef));
        assert_eq!(region.read::<u32>(12), 0xdead_beef);
        assert_eq!(region.read::<u16>(12), 0xbeef);
        assert_eq!(region.read::<u8>(15), 0xde);
        assert_eq!(region.read::<u32>(16), u32::MAX, "past the end");
        assert_eq!(region.read::<u32>(13), u32::MAX, "misaligned");
        assert_eq!(region.read::<u32>(usize::MAX - 1), u32::MAX, "overflow");
        assert!(!region.write::<u16>(16, 1));
        assert_eq!(backing, [0, 0, 0, 0xdead_beef]);
    }
}
