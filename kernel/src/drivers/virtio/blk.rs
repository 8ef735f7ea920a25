//! Read-only virtio-blk (virtio 1.2 §5.2), one request in flight, polled.
//!
//! Built on `virtio-drivers`' split virtqueue (which keeps a private shadow of the descriptors
//! and checks that the used id equals the request's token) rather than on its `VirtIOBlk`,
//! because `VirtIOBlk` waits for completions without a time limit, never checks the length the
//! device reports as written, takes the capacity as given, and does not accept
//! VIRTIO_F_ACCESS_PLATFORM. Here:
//! - the capacity is bounded so `sectors × 512` cannot overflow;
//! - every request is checked against the capacity before it is queued;
//! - the used length must be exactly data + status byte, and the status byte must be OK;
//! - a request that is not completed within [`REQUEST_TIMEOUT_MS`] fails, and so does a used
//!   entry for another descriptor chain; both disable the device (its queue state is unknown);
//! - data reaches the caller only through the bounce copy of [`PoolHal`].

use super::deadline::Deadline;
use super::error::VirtioError;
use super::hal::{PoolHal, PoolSource};
use super::negotiate;
use super::pci::transport::VirtioTransport;
use core::fmt;
use virtio_drivers::BufferDirection;
use virtio_drivers::queue::VirtQueue;

/// Bytes per sector.
pub const SECTOR_SIZE: usize = 512;
/// Largest single request: large reads are what make the disk fast, but each is bounced
/// through the shared pool, which must keep room for the other devices.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How long one request may take.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Descriptors: header, data, status.
const QUEUE_SIZE: usize = 4;
const QUEUE: u16 = 0;
/// VIRTIO_BLK_F_RO.
const F_RO: u64 = 1 << 5;
/// Largest capacity accepted, so byte offsets fit in a `u64`.
pub const MAX_CAPACITY_SECTORS: u64 = u64::MAX / SECTOR_SIZE as u64;
const REQUEST_IN: u32 = 0;
const STATUS_OK: u8 = 0;

/// Why a block read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The buffer is empty or not whole sectors.
    BadLength(usize),
    /// The read runs past the end of the disk.
    OutOfRange {
        /// First sector asked for.
        sector: u64,
        /// Sectors asked for.
        count: u64,
        /// Disk size in sectors.
        capacity: u64,
    },
    /// The device answered with a status other than OK.
    Status(u8),
    /// The device or transport failed.
    Device(VirtioError),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength(len) => write!(f, "read of {len} bytes is not whole 512-byte sectors"),
            Self::OutOfRange {
                sector,
                count,
                capacity,
            } => write!(
                f,
                "read of {count} sectors at {sector} runs past the disk's {capacity} sectors"
            ),
            Self::Status(status) => write!(f, "device answered status {status}"),
            Self::Device(error) => write!(f, "{error}"),
        }
    }
}

impl From<VirtioError> for BlockError {
    fn from(error: VirtioError) -> Self {
        Self::Device(error)
    }
}

/// Checks a read of `len` bytes at `sector` against a disk of `capacity` sectors.
pub fn check_read(sector: u64, len: usize, capacity: u64) -> Result<(), BlockError> {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::BadLength(len));
    }
    let count = (len / SECTOR_SIZE) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BlockError::OutOfRange {
            sector,
            count,
            capacity,
        }),
    }
}

/// The 16-byte request header.
fn request_header(kind: u32, sector: u64) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&kind.to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    header
}

/// A read-only virtio block device.
pub struct BlockDevice<S: PoolSource, T: VirtioTransport> {
    transport: T,
    queue: VirtQueue<PoolHal<S>, QUEUE_SIZE>,
    capacity_sectors: u64,
    read_only: bool,
    failed: bool,
    timeout_ms: u64,
}

impl<S: PoolSource, T: VirtioTransport> Drop for BlockDevice<S, T> {
    fn drop(&mut self) {
        // Before the queue's rings return to the pool.
        negotiate::abandon(&mut self.transport);
    }
}

impl<S: PoolSource, T: VirtioTransport> BlockDevice<S, T> {
    /// Initialises the device behind `transport`.
    pub fn new(mut transport: T) -> Result<Self, VirtioError> {
        let features = negotiate::begin(&mut transport, F_RO)?;
        let (queue, capacity_sectors) = Self::set_up(&mut transport)?;
        Ok(Self {
            transport,
            queue,
            capacity_sectors,
            read_only: features & F_RO != 0,
            failed: false,
            timeout_ms: REQUEST_TIMEOUT_MS,
        })
    }

    /// Reads the configuration and sets up the queue; on any error the device is abandoned
    /// (reset) before the queue's rings are freed.
    fn set_up(transport: &mut T) -> Result<(VirtQueue<PoolHal<S>, QUEUE_SIZE>, u64), VirtioError> {
        let result = Self::configure(transport);
        if result.is_err() {
            negotiate::abandon(transport);
        }
        result
    }

    fn configure(
        transport: &mut T,
    ) -> Result<(VirtQueue<PoolHal<S>, QUEUE_SIZE>, u64), VirtioError> {
        let capacity = transport
            .read_consistent(|| {
                let low: u32 = transport.read_config_space(0)?;
                let high: u32 = transport.read_config_space(4)?;
                Ok((u64::from(high) << 32) | u64::from(low))
            })
            .map_err(|e| match e {
                virtio_drivers::Error::IoError => VirtioError::ConfigUnstable,
                other => VirtioError::Queue(other),
            })?;
        if capacity > MAX_CAPACITY_SECTORS {
            return Err(VirtioError::BadConfig {
                field: "capacity",
                value: capacity,
            });
        }
        let max = transport.max_queue_size(QUEUE);
        if max < QUEUE_SIZE as u32 {
            return Err(VirtioError::QueueTooSmall { queue: QUEUE, max });
        }
        let queue = VirtQueue::new(transport, QUEUE, false, false)?;
        if let Some(fault) = transport.fault() {
            log::warn!("virtio-blk transport fault: {fault:?}");
            negotiate::abandon(transport);
            return Err(VirtioError::DeviceFailed);
        }
        if let Err(error) = negotiate::finish(transport) {
            negotiate::abandon(transport);
            return Err(error);
        }
        Ok((queue, capacity))
    }

    /// Disk size in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_sectors * SECTOR_SIZE as u64
    }

    /// Disk size in sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    /// Changes how long one request may take (default [`REQUEST_TIMEOUT_MS`]).
    pub fn set_timeout_ms(&mut self, millis: u64) {
        self.timeout_ms = millis;
    }

    /// Whether the device has been given up on (a timeout or a used entry for no request).
    pub fn has_failed(&self) -> bool {
        self.failed || self.transport.fault().is_some()
    }

    /// Whether the device said it is read-only (Ward never writes either way).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Fills `buffer` (whole sectors) from the disk starting at sector `offset_sectors`, in
    /// requests of up to [`MAX_REQUEST_BYTES`].
    pub fn read(&mut self, offset_sectors: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        check_read(offset_sectors, buffer.len(), self.capacity_sectors)?;
        let mut sector = offset_sectors;
        for chunk in buffer.chunks_mut(MAX_REQUEST_BYTES) {
            self.read_chunk(sector, chunk)?;
            sector += (chunk.len() / SECTOR_SIZE) as u64;
        }
        Ok(())
    }

    fn read_chunk(&mut self, sector: u64, data: &mut [u8]) -> Result<(), BlockError> {
        if self.has_failed() {
            return Err(VirtioError::DeviceFailed.into());
        }
        let header = request_header(REQUEST_IN, sector);
        let mut status = [0xffu8];
        let _bounces = PoolHal::<S>::reserve(&[
            (&header, BufferDirection::DriverToDevice),
            (data, BufferDirection::DeviceToDriver),
            (&status, BufferDirection::DeviceToDriver),
        ])?;
        // SAFETY: `PoolHal` gives the device bounce copies, never these buffers, so the device
        // cannot touch them. They stay alive and untouched until `pop_used` below succeeds; if it
        // never does, the device is marked failed and the queue is never popped again, so the
        // buffers are not referenced after this function returns.
        let token = unsafe {
            self.queue
                .add(&[&header], &mut [&mut *data, &mut status])
                .map_err(VirtioError::from)?
        };
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        let deadline = Deadline::after_millis(self.timeout_ms);
        while !self.queue.can_pop() {
            if deadline.expired() {
                self.failed = true;
                return Err(VirtioError::Timeout {
                    what: "a block read",
                    millis: deadline.millis(),
                }
                .into());
            }
            core::hint::spin_loop();
        }
        // SAFETY: the same buffers as given to `add` for `token`.
        let used = unsafe {
            self.queue
                .pop_used(token, &[&header], &mut [&mut *data, &mut status])
        };
        let len = match used {
            Ok(len) => len,
            Err(virtio_drivers::Error::WrongToken) => {
                self.failed = true;
                let id = self.queue.peek_used().map_or(u32::MAX, u32::from);
                return Err(VirtioError::UnexpectedUsedId { id }.into());
            }
            Err(other) => {
                self.failed = true;
                return Err(VirtioError::Queue(other).into());
            }
        };
        let expected = data.len() as u32 + 1;
        if len != expected {
            return Err(VirtioError::BadUsedLength { len, expected }.into());
        }
        match status[0] {
            STATUS_OK => Ok(()),
            other => Err(BlockError::Status(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked_against_the_capacity() {
        assert_eq!(check_read(0, 512, 1), Ok(()));
        assert_eq!(check_read(7, 1024, 9), Ok(()));
        assert_eq!(
            check_read(8, 1024, 9),
            Err(BlockError::OutOfRange {
                sector: 8,
                count: 2,
                capacity: 9
            })
        );
        assert!(check_read(u64::MAX, 512, u64::MAX).is_err(), "no overflow");
        assert_eq!(check_read(0, 0, 9), Err(BlockError::BadLength(0)));
        assert_eq!(check_read(0, 513, 9), Err(BlockError::BadLength(513)));
        assert_eq!(MAX_CAPACITY_SECTORS.checked_mul(512).map(|_| ()), Some(()));
    }

    #[test]
    fn request_header_layout() {
        let header = request_header(REQUEST_IN, 0x0102_0304_0506_0708);
        assert_eq!(&header[..8], &[0; 8]);
        assert_eq!(&header[8..], &[8, 7, 6, 5, 4, 3, 2, 1]);
    }
}

#[cfg(test)]
mod device_tests {
    //! The driver against a fake device: honest, lying and dead.
    use super::*;
    use crate::drivers::virtio::fake::{Completion, FakeState, FakeTransport};
    use crate::drivers::virtio::hal::test_pool::{LOCK, TestPool};
    use crate::drivers::virtio::negotiate::{F_ACCESS_PLATFORM, F_VERSION_1};
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use virtio_drivers::transport::DeviceType;

    const CAPACITY: u64 = 64;

    /// The byte the fake disk holds at `offset`.
    fn disk_byte(offset: u64) -> u8 {
        (offset.wrapping_mul(31) >> 3) as u8
    }

    fn honest(_queue: u16, request: &[u8], room: usize) -> Completion {
        let sector = u64::from_le_bytes(request[8..16].try_into().unwrap());
        let mut data: Vec<u8> = (0..room as u64 - 1)
            .map(|i| disk_byte(sector * 512 + i))
            .collect();
        data.push(0);
        Completion::write(data)
    }

    type Fake = (
        Rc<RefCell<FakeState>>,
        Result<BlockDevice<TestPool, FakeTransport>, VirtioError>,
    );

    fn device(offered: u64, capacity: u64) -> Fake {
        let state = FakeState::new(offered, capacity.to_le_bytes().to_vec(), 1, 16);
        state.borrow_mut().responder = Some(alloc::boxed::Box::new(honest));
        let transport = FakeTransport {
            state: state.clone(),
            device_type: DeviceType::Block,
        };
        (state, BlockDevice::new(transport))
    }

    fn modern() -> u64 {
        F_VERSION_1 | F_ACCESS_PLATFORM | F_RO
    }

    #[test]
    fn reads_through_bounce_buffers_and_negotiates_access_platform() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let available =
            || TestPool::pool().unwrap().free_pages() + TestPool::table().lock().spare_pages();
        let free = available();
        let (state, disk) = device(modern() | (1 << 9), CAPACITY);
        let mut disk = disk.unwrap();
        assert_eq!(
            state.borrow().accepted,
            modern(),
            "FLUSH not taken, ACCESS_PLATFORM taken"
        );
        assert_eq!(disk.capacity_bytes(), CAPACITY * 512);
        assert!(disk.is_read_only());
        let mut buffer = vec![0u8; 3 * 512];
        disk.read(5, &mut buffer).unwrap();
        assert!(
            buffer
                .iter()
                .enumerate()
                .all(|(i, &b)| b == disk_byte(5 * 512 + i as u64))
        );
        assert!(disk.read(62, &mut buffer).is_err(), "past the end");
        assert_eq!(
            state.borrow().status(),
            0xf,
            "ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK"
        );
        // Dropping the driver resets the device before its rings are freed, and every bounce
        // page came back.
        drop(disk);
        assert_eq!(state.borrow().status(), 0);
        assert_eq!(available(), free);
    }

    #[test]
    fn lying_lengths_and_statuses_are_errors_for_that_request() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (state, disk) = device(modern(), CAPACITY);
        let mut disk = disk.unwrap();
        let mut buffer = vec![0u8; 1024];
        for (used_len, expected) in [(Some(4096), 4096), (Some(1), 1), (Some(u32::MAX), u32::MAX)] {
            state.borrow_mut().responder = Some(alloc::boxed::Box::new(
                move |_q: u16, request: &[u8], room: usize| match honest(0, request, room) {
                    Completion::Done { data, .. } => Completion::Done {
                        data,
                        used_len,
                        used_id: None,
                    },
                    pending => pending,
                },
            ));
            assert_eq!(
                disk.read(0, &mut buffer),
                Err(BlockError::Device(VirtioError::BadUsedLength {
                    len: expected,
                    expected: 1025
                }))
            );
        }
        state.borrow_mut().responder = Some(alloc::boxed::Box::new(
            |_q: u16, _request: &[u8], room: usize| {
                let mut data = vec![0u8; room];
                data[room - 1] = 1;
                Completion::write(data)
            },
        ));
        assert_eq!(disk.read(0, &mut buffer), Err(BlockError::Status(1)));
        // None of that disabled the device.
        state.borrow_mut().responder = Some(alloc::boxed::Box::new(honest));
        assert_eq!(disk.read(1, &mut buffer), Ok(()));
        assert!(!disk.has_failed());
    }

    #[test]
    fn dead_and_confused_devices_fail_instead_of_hanging() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (state, disk) = device(modern(), CAPACITY);
        let mut disk = disk.unwrap();
        disk.set_timeout_ms(20);
        state.borrow_mut().responder = Some(alloc::boxed::Box::new(
            |_q: u16, _r: &[u8], _room: usize| Completion::Pending,
        ));
        let mut buffer = vec![0u8; 512];
        assert!(matches!(
            disk.read(0, &mut buffer),
            Err(BlockError::Device(VirtioError::Timeout { .. }))
        ));
        assert!(disk.has_failed());
        assert_eq!(
            disk.read(0, &mut buffer),
            Err(BlockError::Device(VirtioError::DeviceFailed))
        );

        let (state, disk) = device(modern(), CAPACITY);
        let mut disk = disk.unwrap();
        state.borrow_mut().responder = Some(alloc::boxed::Box::new(
            |_q: u16, request: &[u8], room: usize| match honest(0, request, room) {
                Completion::Done { data, .. } => Completion::Done {
                    data,
                    used_len: None,
                    used_id: Some(3),
                },
                pending => pending,
            },
        ));
        assert_eq!(
            disk.read(0, &mut buffer),
            Err(BlockError::Device(VirtioError::UnexpectedUsedId { id: 3 }))
        );
        assert!(disk.has_failed());
    }

    #[test]
    fn set_up_refuses_bad_devices() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (_, disk) = device(F_RO, CAPACITY);
        assert_eq!(disk.err(), Some(VirtioError::LegacyOnly { offered: F_RO }));
        let (state, disk) = device(modern(), MAX_CAPACITY_SECTORS + 1);
        assert_eq!(state.borrow().status(), 0, "abandoned devices are reset");
        assert!(matches!(
            disk.err(),
            Some(VirtioError::BadConfig {
                field: "capacity",
                ..
            })
        ));
        let state = FakeState::new(modern(), CAPACITY.to_le_bytes().to_vec(), 1, 16);
        state.borrow_mut().refuse_features = true;
        let transport = FakeTransport {
            state: state.clone(),
            device_type: DeviceType::Block,
        };
        assert!(matches!(
            BlockDevice::<TestPool, _>::new(transport).err(),
            Some(VirtioError::FeaturesRefused { .. })
        ));
        let state = FakeState::new(modern(), CAPACITY.to_le_bytes().to_vec(), 1, 16);
        state.borrow_mut().unstable_generation = true;
        let transport = FakeTransport {
            state: state.clone(),
            device_type: DeviceType::Block,
        };
        assert_eq!(
            BlockDevice::<TestPool, _>::new(transport).err(),
            Some(VirtioError::ConfigUnstable)
        );
        let state = FakeState::new(modern(), CAPACITY.to_le_bytes().to_vec(), 1, 2);
        let transport = FakeTransport {
            state,
            device_type: DeviceType::Block,
        };
        assert_eq!(
            BlockDevice::<TestPool, _>::new(transport).err(),
            Some(VirtioError::QueueTooSmall { queue: 0, max: 2 })
        );
    }
}
