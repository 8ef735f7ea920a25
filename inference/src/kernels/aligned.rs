//! Buffers aligned to 64 bytes (a cache line, and the width of an AVX-512 register), so that
//! kernels never split a vector load across cache lines at a buffer's start.

use alloc::vec::Vec;
use core::mem::size_of;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A zero-initialised byte buffer starting on a 64-byte boundary.
#[derive(Clone, Default)]
pub struct AlignedBytes {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> Self {
        Self {
            lines: alloc::vec![Line([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` holds `lines.len() * 64 >= len` initialised bytes; `Line` is plain
        // bytes with no padding, so any prefix of that memory is a valid `[u8]`.
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the exclusive borrow of `self` makes the slice unique.
        unsafe { core::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

impl core::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}

/// A zero-initialised f32 buffer starting on a 64-byte boundary.
#[derive(Clone, Default, Debug)]
pub struct AlignedF32 {
    bytes: AlignedBytes,
}

impl AlignedF32 {
    pub fn zeroed(len: usize) -> Self {
        Self {
            bytes: AlignedBytes::zeroed(len * size_of::<f32>()),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<f32>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[f32] {
        let bytes = self.bytes.as_slice();
        // SAFETY: the buffer is 64-byte aligned (so 4-byte aligned), holds `len * 4` initialised
        // bytes, and every bit pattern is a valid f32.
        unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.len();
        let bytes = self.bytes.as_mut_slice();
        // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<f32>(), len) }
    }
}
