//! The page-table pool: a bump allocator over `[PAGE_TABLE_POOL_START, PAGE_TABLE_POOL_END)`,
//! RAM inside the loader's working area that the boot page tables identity-map.

use ward_loader::layout::{PAGE_SIZE, PAGE_TABLE_POOL_END, PAGE_TABLE_POOL_START};
use ward_loader::paging::{ENTRIES, PagingError, TableMemory};

/// Hands out zeroed 4 KiB tables from the pool.
pub struct TablePool {
    next: u64,
}

impl TablePool {
    /// The whole pool, unused. Only one pool may exist: `main` creates it once.
    pub fn new() -> Self {
        Self {
            next: PAGE_TABLE_POOL_START,
        }
    }

    /// Tables handed out so far.
    pub fn used(&self) -> u64 {
        (self.next - PAGE_TABLE_POOL_START) / PAGE_SIZE
    }
}

impl TableMemory for TablePool {
    fn allocate_table(&mut self) -> Result<u64, PagingError> {
        if self.next + PAGE_SIZE > PAGE_TABLE_POOL_END {
            return Err(PagingError::OutOfTables);
        }
        let table = self.next;
        self.next += PAGE_SIZE;
        // SAFETY: the page lies in the pool, identity-mapped RAM nothing else uses, and is
        // handed out once.
        unsafe { core::ptr::write_bytes(table as *mut u8, 0, PAGE_SIZE as usize) };
        Ok(table)
    }

    fn table_mut(&mut self, address: u64) -> &mut [u64; ENTRIES] {
        debug_assert!((PAGE_TABLE_POOL_START..self.next).contains(&address));
        // SAFETY: `address` came from `allocate_table`: an aligned, identity-mapped pool page
        // only this pool hands out; the borrow of `self` keeps references from aliasing.
        unsafe { &mut *(address as *mut [u64; ENTRIES]) }
    }
}
