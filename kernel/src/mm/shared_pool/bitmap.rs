//! Page-granular bookkeeping for the shared pool: which pages are taken, first fit.

/// Most pages a pool can hold (64 MiB).
pub const MAX_POOL_PAGES: usize = 16384;
const WORDS: usize = MAX_POOL_PAGES / 64;

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The range is outside the pool.
    OutOfRange,
    /// Some page of the range was not allocated (a double free or a forged handle).
    NotAllocated(usize),
}

/// One bit per page; set = allocated.
#[derive(Clone)]
pub struct PageBitmap {
    bits: [u64; WORDS],
    pages: usize,
}

impl PageBitmap {
    /// A bitmap for `pages` pages (at most [`MAX_POOL_PAGES`]), all free.
    pub const fn new(pages: usize) -> Self {
        let pages = if pages > MAX_POOL_PAGES {
            MAX_POOL_PAGES
        } else {
            pages
        };
        Self {
            bits: [0; WORDS],
            pages,
        }
    }

    /// Pages managed.
    pub fn capacity(&self) -> usize {
        self.pages
    }

    /// Pages currently free.
    pub fn free_pages(&self) -> usize {
        self.pages
            - self
                .bits
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }

    fn is_set(&self, page: usize) -> bool {
        self.bits[page / 64] & (1 << (page % 64)) != 0
    }

    fn set(&mut self, page: usize, value: bool) {
        if value {
            self.bits[page / 64] |= 1 << (page % 64);
        } else {
            self.bits[page / 64] &= !(1 << (page % 64));
        }
    }

    /// Takes `count` contiguous pages (first fit); returns the first page's index.
    pub fn allocate(&mut self, count: usize) -> Option<usize> {
        if count == 0 || count > self.pages {
            return None;
        }
        let mut run_start = 0;
        let mut run = 0;
        for page in 0..self.pages {
            if self.is_set(page) {
                run = 0;
                run_start = page + 1;
                continue;
            }
            run += 1;
            if run == count {
                (run_start..run_start + count).for_each(|p| self.set(p, true));
                return Some(run_start);
            }
        }
        None
    }

    /// Returns pages `[first, first + count)`; every one must be allocated.
    pub fn free(&mut self, first: usize, count: usize) -> Result<(), FreeError> {
        let end = first.checked_add(count).ok_or(FreeError::OutOfRange)?;
        if end > self.pages || count == 0 {
            return Err(FreeError::OutOfRange);
        }
        if let Some(page) = (first..end).find(|&p| !self.is_set(p)) {
            return Err(FreeError::NotAllocated(page));
        }
        (first..end).for_each(|p| self.set(p, false));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuses_freed_holes() {
        let mut map = PageBitmap::new(130);
        assert_eq!(map.allocate(3), Some(0));
        assert_eq!(map.allocate(64), Some(3));
        assert_eq!(map.allocate(2), Some(67));
        assert_eq!(map.free_pages(), 130 - 69);
        map.free(3, 64).unwrap();
        assert_eq!(map.allocate(10), Some(3));
        assert_eq!(map.allocate(61), Some(69));
        assert_eq!(map.allocate(1), Some(13));
        assert_eq!(map.allocate(100), None);
    }

    #[test]
    fn refuses_double_free_and_bad_ranges() {
        let mut map = PageBitmap::new(8);
        let first = map.allocate(4).unwrap();
        map.free(first, 4).unwrap();
        assert_eq!(map.free(first, 4), Err(FreeError::NotAllocated(0)));
        assert_eq!(map.free(6, 4), Err(FreeError::OutOfRange));
        assert_eq!(map.free(usize::MAX, 2), Err(FreeError::OutOfRange));
        assert_eq!(map.allocate(0), None);
        assert_eq!(map.allocate(9), None);
        assert_eq!(map.allocate(8), Some(0));
        assert_eq!(map.free_pages(), 0);
    }

    #[test]
    fn capacity_is_clamped() {
        assert_eq!(PageBitmap::new(usize::MAX).capacity(), MAX_POOL_PAGES);
    }
}
