//! The GHCB as the kernel reaches it: a host-visible page mapped without the C-bit, accessed
//! only with volatile reads and writes at byte offsets (never through a reference), as
//! [`GhcbMemory`] requires. The hypervisor may change any byte at any time; the GHCB protocol
//! layer (`ward_attestation::guest::snp::ghcb`) checks every value read back.

use core::ptr::NonNull;
use ward_attestation::guest::snp::ghcb::GhcbMemory;

/// Size of the GHCB page.
pub const GHCB_SIZE: usize = 4096;

/// Volatile access to one GHCB page.
pub struct SharedGhcb {
    page: NonNull<u8>,
}

impl SharedGhcb {
    /// Wraps the page at `page`.
    ///
    /// # Safety
    /// `page` must point to [`GHCB_SIZE`] bytes mapped read-write for as long as the value is
    /// used, and no Rust reference may point into them.
    pub unsafe fn new(page: NonNull<u8>) -> Self {
        Self { page }
    }

    /// A pointer to `len` bytes at `offset`, or `None` outside the page (offsets come from the
    /// protocol layer's constants; checked anyway so a bad one cannot reach other memory).
    fn at(&self, offset: usize, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        // SAFETY: `offset + len <= GHCB_SIZE`, inside the page given to `new`.
        (end <= GHCB_SIZE).then(|| unsafe { self.page.as_ptr().add(offset) })
    }
}

impl GhcbMemory for SharedGhcb {
    fn read_u64(&self, offset: usize) -> u64 {
        match self.at(offset, 8) {
            // SAFETY: inside the page (checked); unaligned-safe read of host-visible bytes.
            Some(p) => unsafe { p.cast::<u64>().read_unaligned_volatile() },
            None => 0,
        }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        if let Some(p) = self.at(offset, 8) {
            // SAFETY: inside the page (checked), which `new`'s caller keeps mapped writable.
            unsafe { p.cast::<u64>().write_unaligned_volatile(value) }
        }
    }

    fn read_u8(&self, offset: usize) -> u8 {
        match self.at(offset, 1) {
            // SAFETY: inside the page (checked).
            Some(p) => unsafe { p.read_volatile() },
            None => 0,
        }
    }

    fn write_u8(&mut self, offset: usize, value: u8) {
        if let Some(p) = self.at(offset, 1) {
            // SAFETY: inside the page (checked), mapped writable.
            unsafe { p.write_volatile(value) }
        }
    }
}

/// Volatile unaligned access: every GHCB field Ward uses is 8-byte aligned in a page-aligned
/// page, so these are plain aligned volatile accesses split into bytes only if the alignment
/// check fails.
trait VolatileU64 {
    unsafe fn read_unaligned_volatile(self) -> u64;
    unsafe fn write_unaligned_volatile(self, value: u64);
}

impl VolatileU64 for *mut u64 {
    unsafe fn read_unaligned_volatile(self) -> u64 {
        if self.is_aligned() {
            // SAFETY: the caller guarantees 8 readable bytes; aligned.
            return unsafe { self.read_volatile() };
        }
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: the caller guarantees 8 readable bytes.
            *byte = unsafe { self.cast::<u8>().add(i).read_volatile() };
        }
        u64::from_le_bytes(bytes)
    }

    unsafe fn write_unaligned_volatile(self, value: u64) {
        if self.is_aligned() {
            // SAFETY: the caller guarantees 8 writable bytes; aligned.
            return unsafe { self.write_volatile(value) };
        }
        for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
            // SAFETY: the caller guarantees 8 writable bytes.
            unsafe { self.cast::<u8>().add(i).write_volatile(byte) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use ward_attestation::guest::snp::ghcb::{Field, Ghcb, VALID_BITMAP, exit_code};

    #[repr(align(4096))]
    struct Page([u8; GHCB_SIZE]);

    #[test]
    fn protocol_layer_drives_the_page_through_volatile_accesses() {
        let page = Box::into_raw(Box::new(Page([0xEE; GHCB_SIZE])));
        // SAFETY: the page is a live heap allocation, freed below after the last access, and no
        // reference into it exists while `SharedGhcb` uses it.
        let memory = unsafe { SharedGhcb::new(NonNull::new(page.cast::<u8>()).unwrap()) };
        let mut ghcb = Ghcb::new(memory, 0x7000);
        ghcb.prepare_msr(0x1B, None);
        let mut memory = ghcb.into_inner();
        assert_eq!(
            memory.read_u64(Field::SW_EXIT_CODE.offset()),
            exit_code::MSR
        );
        assert_eq!(memory.read_u64(Field::RCX.offset()), 0x1B);
        // The hypervisor answers: RAX/RDX and SW_EXITINFO1 marked valid.
        memory.write_u64(VALID_BITMAP, 0);
        memory.write_u64(VALID_BITMAP + 8, 0);
        for (field, value) in [
            (Field::RAX, 0xFEE0_0900),
            (Field::RDX, 0),
            (Field::SW_EXIT_INFO_1, 0),
        ] {
            memory.write_u64(field.offset(), value);
            let bit = field.valid_bit();
            let at = VALID_BITMAP + bit / 64 * 8;
            let word = memory.read_u64(at);
            memory.write_u64(at, word | 1 << (bit % 64));
        }
        let ghcb = Ghcb::new(memory, 0x7000);
        assert_eq!(ghcb.rdmsr_result(), Ok(0xFEE0_0900));
        let memory = ghcb.into_inner();
        // Outside the page: reads zero, writes nothing.
        assert_eq!(memory.read_u64(GHCB_SIZE - 4), 0);
        assert_eq!(memory.read_u8(GHCB_SIZE), 0);
        // SAFETY: allocated above with Box::into_raw; `memory` is not used after this.
        let page = unsafe { Box::from_raw(page) };
        // Bytes the protocol layer did not write keep their contents.
        assert_eq!(page.0[0x100], 0xEE);
        assert_eq!(page.0[Field::RCX.offset()], 0x1B);
    }
}
