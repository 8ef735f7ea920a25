//! The `virtio_drivers::Hal` that keeps devices out of private memory (DESIGN §6).
//!
//! - `dma_alloc` (virtqueue rings) hands out pages of the shared pool.
//! - `share` never gives the device the caller's buffer: it hands the device bounce pages in the
//!   pool, with the bytes copied in when the device is to read them.
//! - `unshare` copies the device's bytes out into the caller's private buffer (when the device
//!   was to write) and releases the bounce pages.
//!
//! So the device only ever sees pool pages, private memory is never referenced by a descriptor,
//! and what the driver looks at afterwards is a private copy it can validate without the host
//! changing it underneath. On SNP/TDX the pool pages are the shared ones (the platform converted
//! them at boot), so nothing here depends on the platform.
//!
//! `share` cannot report failure, so drivers call [`PoolHal::reserve`] for a request's buffers
//! before queueing it: that is where an exhausted pool becomes an error, and `share` then takes
//! the reserved pages (found by the private buffer's address).
//!
//! Bounce pages the device wrote into (device-to-driver buffers) are kept as spares and reused
//! for the next buffer of the same size without being zeroed or scrubbed: they only ever held
//! bytes the host wrote, never private data, and skipping the two extra passes over every large
//! disk read matters under TCG. Pages that held private data (driver-to-device buffers) are
//! scrubbed when freed, as the pool does for every free.
//!
//! `Hal` methods are associated functions, so the pool is found through a [`PoolSource`]: the
//! kernel's boot-time pool on bare metal, a test pool on the host.

use crate::mm::address::PAGE_SIZE;
use crate::mm::shared_pool::{SharedBuffer, SharedPool};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ptr::NonNull;
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Pool pages handed to a device, by device address.
pub struct BounceTable {
    buffers: BTreeMap<PhysAddr, OwnedBuffer>,
    /// Bounce buffers set aside for private buffers about to be queued, by their address.
    reserved: BTreeMap<usize, OwnedBuffer>,
    /// Device-written bounce buffers kept for reuse (see the module documentation).
    spares: Vec<OwnedBuffer>,
}

/// Most pages kept as spares: one large disk request and a few small buffers.
const MAX_SPARE_PAGES: usize = 512;
/// Most spare buffers kept.
const MAX_SPARES: usize = 16;

impl BounceTable {
    /// An empty table (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            buffers: BTreeMap::new(),
            reserved: BTreeMap::new(),
            spares: Vec::new(),
        }
    }

    /// Buffers currently handed out.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Whether no buffer is handed out.
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Pages held as spares.
    pub fn spare_pages(&self) -> usize {
        self.spares.iter().map(|b| pages_of(&b.0)).sum()
    }

    /// Keeps a device-written buffer for reuse, or drops it (scrub + free) when the spares are
    /// full.
    fn keep_spare(&mut self, buffer: SharedBuffer<'static>) {
        if self.spares.len() < MAX_SPARES
            && self.spare_pages() + pages_of(&buffer) <= MAX_SPARE_PAGES
        {
            self.spares.push(OwnedBuffer(buffer));
        }
    }

    fn take_spare(&mut self, pages: usize) -> Option<SharedBuffer<'static>> {
        let index = self.spares.iter().position(|b| pages_of(&b.0) == pages)?;
        Some(self.spares.swap_remove(index).0)
    }
}

fn pages_of(buffer: &SharedBuffer<'_>) -> usize {
    buffer.len() / PAGE_SIZE as usize
}

impl Default for BounceTable {
    fn default() -> Self {
        Self::new()
    }
}

/// A pool buffer kept in the table.
struct OwnedBuffer(SharedBuffer<'static>);

// SAFETY: a `SharedBuffer` is an exclusive handle on its own pool pages (it holds a raw pointer
// only because the pages are host-writable and must not be referenced); handing that ownership
// to another CPU is fine, and the table is only reached through its mutex.
unsafe impl Send for OwnedBuffer {}

/// Where a [`PoolHal`] takes its pages from.
pub trait PoolSource {
    /// The pool, once it exists.
    fn pool() -> Option<&'static SharedPool>;
    /// The table of pages currently handed to devices.
    fn table() -> &'static Mutex<BounceTable>;
}

/// A `Hal` bouncing every buffer through the pool of `S`.
pub struct PoolHal<S>(PhantomData<S>);

/// Pages a buffer of `len` bytes needs (at least one).
pub const fn pages_for(len: usize) -> usize {
    let pages = len.div_ceil(PAGE_SIZE as usize);
    if pages == 0 { 1 } else { pages }
}

/// Bounce pages set aside for the buffers of one request, taken by `Hal::share` when the request
/// is queued. `share` cannot report failure, so drivers reserve first and get an error here when
/// the pool is exhausted; pages a request did not take are freed when this is dropped.
#[must_use]
pub struct Reservation<S: PoolSource> {
    keys: Vec<usize>,
    _source: PhantomData<S>,
}

impl<S: PoolSource> Drop for Reservation<S> {
    fn drop(&mut self) {
        let mut table = S::table().lock();
        for key in &self.keys {
            table.reserved.remove(key);
        }
    }
}

fn key_of(buffer: *const u8) -> usize {
    buffer as usize
}

impl<S: PoolSource> PoolHal<S> {
    /// Sets aside bounce pages for each of `buffers` (non-empty private buffers about to be
    /// queued in that direction).
    pub fn reserve(
        buffers: &[(&[u8], BufferDirection)],
    ) -> Result<Reservation<S>, super::error::VirtioError> {
        let mut reservation = Reservation {
            keys: Vec::with_capacity(buffers.len()),
            _source: PhantomData,
        };
        for &(buffer, direction) in buffers {
            let pages = pages_for(buffer.len());
            let spare = if direction == BufferDirection::DeviceToDriver {
                S::table().lock().take_spare(pages)
            } else {
                None
            };
            let bounce = match spare {
                Some(spare) => spare,
                None => Self::allocate_buffer(pages)
                    .ok_or(super::error::VirtioError::PoolExhausted { pages })?,
            };
            let key = key_of(buffer.as_ptr());
            S::table().lock().reserved.insert(key, OwnedBuffer(bounce));
            reservation.keys.push(key);
        }
        Ok(reservation)
    }

    fn allocate_buffer(pages: usize) -> Option<SharedBuffer<'static>> {
        let pool = S::pool()?;
        match pool.allocate(pages) {
            Ok(buffer) => Some(buffer),
            Err(_) => {
                // Give the spares back and try once more.
                S::table().lock().spares.clear();
                pool.allocate(pages).ok()
            }
        }
    }

    fn allocate(pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        Self::allocate_buffer(pages).map(Self::hand_out)
    }

    fn hand_out(buffer: SharedBuffer<'static>) -> (PhysAddr, NonNull<u8>) {
        let phys = buffer.phys().as_u64();
        let ptr = buffer.as_ptr();
        S::table().lock().buffers.insert(phys, OwnedBuffer(buffer));
        (phys, ptr)
    }

    fn take(phys: PhysAddr) -> Option<SharedBuffer<'static>> {
        S::table().lock().buffers.remove(&phys).map(|b| b.0)
    }
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned pool pages that stay allocated (and mapped in
// the shared window) until `dma_dealloc`; `share` returns the device address of pool pages that
// stay allocated until the matching `unshare`. Nothing else uses those pages meanwhile.
unsafe impl<S: PoolSource> Hal for PoolHal<S> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // A zero address tells `virtio_drivers::Dma::new` that allocation failed.
        Self::allocate(pages).unwrap_or((0, NonNull::dangling()))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // Dropping the buffer scrubs and frees its pages.
        match Self::take(paddr) {
            Some(_) => 0,
            None => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Ward's own transport maps BARs itself (see `pci`); this is only here for the trait. The
        // kernel identity-maps its MMIO windows.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let pages = pages_for(len);
        let reserved = S::table()
            .lock()
            .reserved
            .remove(&key_of(buffer.as_ptr().cast::<u8>()))
            .map(|b| b.0)
            .filter(|b| pages_of(b) == pages);
        // Without a reservation: a spare for device-written buffers, else fresh pages.
        let spare = || {
            (direction == BufferDirection::DeviceToDriver)
                .then(|| S::table().lock().take_spare(pages))
                .flatten()
        };
        let bounce = match reserved.or_else(spare) {
            Some(buffer) => Some(Self::hand_out(buffer)),
            None => Self::allocate(pages),
        };
        let Some((phys, _)) = bounce else {
            // Unreachable while drivers keep their promise to reserve first (`reserve`).
            // Returning any address would let the device write to memory it was never given,
            // so stop instead.
            panic!("virtio bounce: shared pool exhausted and no reservation for this buffer");
        };
        if matches!(
            direction,
            BufferDirection::DriverToDevice | BufferDirection::Both
        ) {
            // SAFETY: the caller (`VirtQueue::add`) passes a live buffer it does not touch until
            // `unshare`; it is private memory, so a shared reference to it is sound.
            let source = unsafe { buffer.as_ref() };
            let table = S::table().lock();
            if let Some(bounce) = table.buffers.get(&phys) {
                // In bounds: the bounce buffer has at least `len` bytes.
                let _ = bounce.0.copy_in(0, source);
            }
        }
        phys
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        let Some(bounce) = Self::take(paddr) else {
            return;
        };
        if matches!(
            direction,
            BufferDirection::DeviceToDriver | BufferDirection::Both
        ) {
            // SAFETY: the caller passes the same live private buffer it gave to `share`, and the
            // device is done with the bounce pages; nothing else references the buffer now.
            let destination = unsafe { buffer.as_mut() };
            let len = destination.len().min(bounce.len());
            let _ = bounce.copy_out(0, &mut destination[..len]);
        }
        if direction == BufferDirection::DeviceToDriver {
            // Only host-written bytes in it: kept for reuse without scrubbing.
            S::table().lock().keep_spare(bounce);
        }
        // Otherwise `bounce` drops here: scrubbed and returned to the pool.
    }
}

#[cfg(test)]
pub(crate) mod test_pool {
    //! A pool in ordinary memory whose "physical" addresses are its virtual ones, so fake
    //! devices in tests can follow descriptor addresses.
    use super::*;
    use crate::mm::address::PhysAddr as KernelPhys;
    use alloc::vec;
    use spin::Once;

    pub struct TestPool;

    static POOL: Once<SharedPool> = Once::new();
    static TABLE: Mutex<BounceTable> = Mutex::new(BounceTable::new());

    /// Pages in the test pool.
    pub const PAGES: usize = 512;

    impl PoolSource for TestPool {
        fn pool() -> Option<&'static SharedPool> {
            Some(POOL.call_once(|| {
                let backing = vec![0u8; (PAGES + 1) * PAGE_SIZE as usize].leak();
                let offset = backing.as_ptr().align_offset(PAGE_SIZE as usize);
                let base = NonNull::new(backing[offset..].as_mut_ptr()).unwrap();
                // SAFETY: the leaked allocation lives forever, is used by nothing else, and is
                // at least PAGES pages long from `base`.
                unsafe { SharedPool::new(base, KernelPhys::new(base.as_ptr() as u64), PAGES) }
            }))
        }

        fn table() -> &'static Mutex<BounceTable> {
            &TABLE
        }
    }

    /// Serializes tests that use the one test pool (they check its free-page count).
    pub static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
}

#[cfg(test)]
mod tests {
    use super::test_pool::{LOCK, TestPool};
    use super::*;

    type TestHal = PoolHal<TestPool>;

    /// Free pages, counting spares (which are given back on demand).
    fn available() -> usize {
        TestPool::pool().unwrap().free_pages() + TestPool::table().lock().spare_pages()
    }

    #[test]
    fn driver_to_device_buffers_are_bounced_then_scrubbed_and_freed() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let before = available();
        // Devices in other tests may have left buffers behind on purpose (a failed device's).
        let outstanding = TestPool::table().lock().len();
        let mut private = [7u8; 5000];
        let original = NonNull::from(&mut private[..]);
        // SAFETY: `private` outlives the share/unshare pair and is not touched in between.
        let phys = unsafe { TestHal::share(original, BufferDirection::DriverToDevice) };
        assert_ne!(
            phys,
            private.as_ptr() as u64,
            "the device gets a bounce copy"
        );
        assert_eq!(available(), before - 2);
        // The device sees the bytes at the bounce address (identity in the test pool).
        // SAFETY: the test pool's device addresses are its virtual addresses.
        let seen = unsafe { core::slice::from_raw_parts(phys as *const u8, 5000) };
        assert!(seen.iter().all(|&b| b == 7));
        // SAFETY: the same buffer as shared.
        unsafe { TestHal::unshare(phys, original, BufferDirection::DriverToDevice) };
        assert_eq!(available(), before);
        // SAFETY: the pages are back in the (test) pool, still mapped; reading them is fine.
        let scrubbed = unsafe { core::slice::from_raw_parts(phys as *const u8, 5000) };
        assert!(scrubbed.iter().all(|&b| b == 0), "private bytes scrubbed");
        assert_eq!(TestPool::table().lock().len(), outstanding);
        // Unknown addresses are ignored rather than trusted.
        // SAFETY: nothing is shared at 0x1000; `unshare` must do nothing.
        unsafe { TestHal::unshare(0x1000, original, BufferDirection::DeviceToDriver) };
        assert_eq!(private[0], 7);
    }

    #[test]
    fn device_to_driver_buffers_are_copied_back_and_reused() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let before = available();
        let mut private = [1u8; 8192];
        let original = NonNull::from(&mut private[..]);
        // SAFETY: `private` outlives the share/unshare pair and is not touched in between.
        let phys = unsafe { TestHal::share(original, BufferDirection::DeviceToDriver) };
        // SAFETY: the test pool's device addresses are its virtual addresses: the "device"
        // writes its reply.
        unsafe { (phys as *mut u8).write_bytes(9, 8192) };
        // SAFETY: the same buffer as shared.
        unsafe { TestHal::unshare(phys, original, BufferDirection::DeviceToDriver) };
        assert!(private.iter().all(|&b| b == 9));
        assert_eq!(available(), before, "a spare counts as available");
        // The same size gets the spare back, unzeroed: it only ever held device bytes.
        let mut again = [0u8; 8000];
        let again_ptr = NonNull::from(&mut again[..]);
        // SAFETY: as above.
        let reused = unsafe { TestHal::share(again_ptr, BufferDirection::DeviceToDriver) };
        assert_eq!(reused, phys);
        // SAFETY: as above.
        unsafe { TestHal::unshare(reused, again_ptr, BufferDirection::DeviceToDriver) };
        // A driver-to-device buffer never takes a spare (private bytes would land in it).
        let mut out = [5u8; 8192];
        let out_ptr = NonNull::from(&mut out[..]);
        // SAFETY: as above.
        let fresh = unsafe { TestHal::share(out_ptr, BufferDirection::DriverToDevice) };
        assert_ne!(fresh, phys);
        // SAFETY: as above.
        unsafe { TestHal::unshare(fresh, out_ptr, BufferDirection::DriverToDevice) };
        assert_eq!(available(), before);
    }

    #[test]
    fn dma_regions_come_from_the_pool() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let free = available();
        let (phys, ptr) = TestHal::dma_alloc(3, BufferDirection::Both);
        assert_eq!(phys, ptr.as_ptr() as u64);
        assert_eq!(available(), free - 3);
        // Reservations fail cleanly when the pool cannot hold them, and free what they took.
        let too_big = vec![0u8; (available() + 1) * PAGE_SIZE as usize];
        let small = [0u8; 10];
        let before = available();
        assert!(matches!(
            TestHal::reserve(&[
                (&small, BufferDirection::DriverToDevice),
                (&too_big, BufferDirection::DeviceToDriver)
            ]),
            Err(crate::drivers::virtio::error::VirtioError::PoolExhausted { .. })
        ));
        assert_eq!(available(), before);
        // SAFETY: the region was just allocated and is not in use.
        assert_eq!(unsafe { TestHal::dma_dealloc(phys, ptr, 3) }, 0);
        // SAFETY: already freed: must be refused, not double-freed.
        assert_eq!(unsafe { TestHal::dma_dealloc(phys, ptr, 3) }, -1);
        assert_eq!(available(), free);
        assert_eq!(pages_for(0), 1);
        assert_eq!(pages_for(4097), 2);
    }
}
