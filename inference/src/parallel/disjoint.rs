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
