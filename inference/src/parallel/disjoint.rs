//! One buffer handed out in disjoint parts to the parallel tasks of a run.

use core::marker::PhantomData;
use core::ops::Range;

/// A mutable borrow of `[T]` that tasks running at the same time reborrow in parts; the caller
/// of [`Self::range`] / [`Self::item`] promises that no two live parts overlap.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: sharing a `Disjoint` only lets threads reach non-overlapping parts (the contract of
// `range` and `item`), which is what sending `&mut` parts of a `[T]` to them would allow.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(items: &'a mut [T]) -> Self {
        Self {
            ptr: items.as_mut_ptr(),
            len: items.len(),
            borrow: PhantomData,
        }
    }

    /// The `len` items from `ptr` (raw parts of a buffer that outlives `'a`), for phases of one
    /// run that reach a buffer the caller also reads through a shared borrow (at other times).
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid for reads and writes during `'a`, and nothing may access
    /// a part while a task holds it from [`Self::range`] / [`Self::item`] (or write it while a
    /// task holds it from [`Self::shared`]).
    pub(crate) unsafe fn from_raw_parts((ptr, len): (*mut T, usize)) -> Self {
        Self {
            ptr,
            len,
            borrow: PhantomData,
        }
    }

    /// Items `range` shared, or `None` past the end.
    ///
    /// # Safety
    /// No live part obtained from `self` through [`Self::range`] / [`Self::item`] may overlap
    /// `range` while this one is used.
    pub(crate) unsafe fn shared(&self, range: Range<usize>) -> Option<&'a [T]> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        // SAFETY: in bounds of the buffer, which outlives `'a`; the caller guarantees nothing
        // writes these items meanwhile.
        Some(unsafe {
            core::slice::from_raw_parts(self.ptr.add(range.start), range.end - range.start)
        })
    }

    /// Items `range`, or `None` past the end.
    ///
    /// # Safety
    /// No other live part obtained from `self` may overlap `range`.
    pub(crate) unsafe fn range(&self, range: Range<usize>) -> Option<&'a mut [T]> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of the borrowed slice, which outlives `'a`; the
        // caller guarantees nothing else uses these items meanwhile.
        Some(unsafe {
            core::slice::from_raw_parts_mut(self.ptr.add(range.start), range.end - range.start)
        })
    }

    /// Item `index`, or `None` past the end.
    ///
    /// # Safety
    /// No other live part obtained from `self` may contain `index`.
    pub(crate) unsafe fn item(&self, index: usize) -> Option<&'a mut T> {
        // SAFETY: forwarded to the caller.
        unsafe { self.range(index..index + 1) }.map(|items| &mut items[0])
    }
}
