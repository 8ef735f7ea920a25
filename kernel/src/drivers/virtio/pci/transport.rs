//! `virtio_drivers::transport::Transport` over a modern virtio-pci function, with the checks
//! `virtio-drivers`' own `PciTransport` leaves out:
//!
//! - structures are placed only inside BARs this kernel assigned, with checked arithmetic;
//! - each queue's notify address (`queue_notify_off × multiplier`, device values) is computed
//!   once when the queue is set up and checked against the notify structure; an out-of-range one
//!   marks the transport faulty instead of panicking in `notify` (theirs `unwrap`s);
//! - the queue index is checked against `num_queues`;
//! - configuration reads are bounds-checked against the device structure and use the access
//!   widths the specification asks for;
//! - `read_consistent` gives up after a bounded number of generation changes (theirs loops for
//!   as long as the device keeps changing it).

use super::bars::{self, Bar, BarAllocator};
use super::caps::{self, Region};
use super::mmio::MmioRegion;
use super::{ConfigAccess, PciSetupError};
use crate::drivers::pci::config::Bdf;
use core::ptr::NonNull;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Queues a Ward driver uses at most (vsock: rx, tx, event).
pub const MAX_QUEUES: usize = 4;
/// Attempts at a consistent configuration read.
const CONFIG_READ_ATTEMPTS: usize = 8;

/// Common configuration register offsets (virtio 1.2 §4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const CONFIG_GENERATION: usize = 0x15;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
}

/// Something the device did that left the transport unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFault {
    /// A queue's notify address falls outside the notify structure.
    NotifyOutOfRange {
        /// Queue index.
        queue: u16,
        /// The device's `queue_notify_off`.
        notify_off: u16,
    },
    /// A queue index the driver does not support or the device does not have.
    BadQueue(u16),
}

/// What the drivers need from a transport besides `virtio_drivers`' trait.
pub trait VirtioTransport: Transport {
    /// The first fault seen, if any: a driver treats the device as failed.
    fn fault(&self) -> Option<TransportFault>;
}

/// The byte offset of a queue's notify register inside the notify structure, if it fits.
pub fn notify_offset(notify_off: u16, multiplier: u32, notify_len: usize) -> Option<usize> {
    let offset = u64::from(notify_off).checked_mul(u64::from(multiplier))?;
    let end = offset.checked_add(2)?;
    (end <= notify_len as u64).then_some(offset as usize)
}

/// A modern virtio-pci device.
#[derive(Debug)]
pub struct PciTransport {
    bdf: Bdf,
    device_type: DeviceType,
    common: MmioRegion,
    notify: MmioRegion,
    notify_multiplier: u32,
    isr: MmioRegion,
    device: Option<MmioRegion>,
    notify_offsets: [Option<usize>; MAX_QUEUES],
    fault: Option<TransportFault>,
}

fn region(bars: &[Option<Bar>; 6], region: &Region) -> Result<MmioRegion, PciSetupError> {
    let bar = bars
        .get(usize::from(region.bar))
        .copied()
        .flatten()
        .ok_or(PciSetupError::UnplacedBar(region.bar))?;
    let range = region
        .within(bar.size)
        .ok_or(PciSetupError::OutsideBar(region.bar))?;
    let start = bar
        .address
        .checked_add(range.start)
        .ok_or(PciSetupError::OutsideBar(region.bar))?;
    let end = start
        .checked_add(range.end - range.start)
        .ok_or(PciSetupError::OutsideBar(region.bar))?;
    // Only the window the kernel maps (and `bars` allocates from) may be reached.
    if start < bars::BAR_WINDOW_START || end > bars::BAR_WINDOW_END {
        return Err(PciSetupError::OutsideBar(region.bar));
    }
    let base = NonNull::new(start as *mut u8).ok_or(PciSetupError::OutsideBar(region.bar))?;
    // SAFETY: the range lies inside a BAR this kernel just placed in the BAR window, which the
    // kernel's page tables identity-map uncached; nothing else uses these registers.
    Ok(unsafe { MmioRegion::new(base, (end - start) as usize) })
}

impl PciTransport {
    /// Places the BARs of `bdf`, finds its virtio structures and maps them. `device_type` is
    /// what the PCI device ID said.
    pub fn new(
        space: &impl ConfigAccess,
        bdf: Bdf,
        device_type: DeviceType,
        allocator: &mut BarAllocator,
    ) -> Result<Self, PciSetupError> {
        let found = caps::find(space, bdf)?;
        let bars = bars::assign(space, bdf, allocator)?;
        Ok(Self {
            bdf,
            device_type,
            common: region(&bars, &found.common)?,
            notify: region(&bars, &found.notify)?,
            notify_multiplier: found.notify_multiplier,
            isr: region(&bars, &found.isr)?,
            device: found
                .device
                .as_ref()
                .map(|r| region(&bars, r))
                .transpose()?,
            notify_offsets: [None; MAX_QUEUES],
            fault: None,
        })
    }

    /// Where the device is.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    fn select_queue(&mut self, queue: u16) -> bool {
        let count = self.common.read::<u16>(common::NUM_QUEUES);
        if usize::from(queue) >= MAX_QUEUES || queue >= count {
            self.fault.get_or_insert(TransportFault::BadQueue(queue));
            return false;
        }
        self.common.write::<u16>(common::QUEUE_SELECT, queue);
        true
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        // Two 32-bit halves: the specification allows it for 64-bit fields, and it works
        // wherever 64-bit MMIO is split.
        self.common.write::<u32>(offset, value as u32);
        self.common.write::<u32>(offset + 4, (value >> 32) as u32);
    }
}

impl VirtioTransport for PciTransport {
    fn fault(&self) -> Option<TransportFault> {
        self.fault
    }
}

impl Transport for PciTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.common.write::<u32>(common::DEVICE_FEATURE_SELECT, 0);
        let low = self.common.read::<u32>(common::DEVICE_FEATURE);
        self.common.write::<u32>(common::DEVICE_FEATURE_SELECT, 1);
        let high = self.common.read::<u32>(common::DEVICE_FEATURE);
        (u64::from(high) << 32) | u64::from(low)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.common.write::<u32>(common::DRIVER_FEATURE_SELECT, 0);
        self.common
            .write::<u32>(common::DRIVER_FEATURE, driver_features as u32);
        self.common.write::<u32>(common::DRIVER_FEATURE_SELECT, 1);
        self.common
            .write::<u32>(common::DRIVER_FEATURE, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        if !self.select_queue(queue) {
            return 0;
        }
        self.common.read::<u16>(common::QUEUE_SIZE).into()
    }

    fn notify(&mut self, queue: u16) {
        match self
            .notify_offsets
            .get(usize::from(queue))
            .copied()
            .flatten()
        {
            Some(offset) => {
                self.notify.write::<u16>(offset, queue);
            }
            None => {
                self.fault.get_or_insert(TransportFault::BadQueue(queue));
            }
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.common.read::<u8>(common::DEVICE_STATUS).into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.common
            .write::<u8>(common::DEVICE_STATUS, status.bits() as u8);
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if !self.select_queue(queue) {
            return;
        }
        let notify_off = self.common.read::<u16>(common::QUEUE_NOTIFY_OFF);
        let Some(offset) = notify_offset(notify_off, self.notify_multiplier, self.notify.len())
        else {
            self.fault
                .get_or_insert(TransportFault::NotifyOutOfRange { queue, notify_off });
            return;
        };
        self.notify_offsets[usize::from(queue)] = Some(offset);
        self.common.write::<u16>(common::QUEUE_SIZE, size as u16);
        self.write_u64(common::QUEUE_DESC, descriptors);
        self.write_u64(common::QUEUE_DRIVER, driver_area);
        self.write_u64(common::QUEUE_DEVICE, device_area);
        self.common.write::<u16>(common::QUEUE_ENABLE, 1);
    }

    fn queue_unset(&mut self, _queue: u16) {
        // Modern PCI has no way to disable one queue; a device reset (status 0) releases all.
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        if !self.select_queue(queue) {
            // Reported as in use so that `VirtQueue::new` refuses it.
            return true;
        }
        self.common.read::<u16>(common::QUEUE_ENABLE) == 1
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::from_bits_truncate(self.isr.read::<u8>(0).into())
    }

    fn read_config_generation(&self) -> u32 {
        self.common.read::<u8>(common::CONFIG_GENERATION).into()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let device = self.device.as_ref().ok_or(Error::ConfigSpaceMissing)?;
        let size = core::mem::size_of::<T>();
        let end = offset.checked_add(size).ok_or(Error::ConfigSpaceTooSmall)?;
        if end > device.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        match size {
            1 => bytes[0] = device.read::<u8>(offset),
            2 if offset.is_multiple_of(2) => {
                bytes.copy_from_slice(&device.read::<u16>(offset).to_le_bytes())
            }
            _ if size.is_multiple_of(4) && offset.is_multiple_of(4) => {
                for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                    chunk.copy_from_slice(&device.read::<u32>(offset + 4 * i).to_le_bytes());
                }
            }
            _ => return Err(Error::InvalidParam),
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), Error> {
        // Ward's drivers never write device configuration.
        Err(Error::Unsupported)
    }

    fn read_consistent<T>(&self, f: impl Fn() -> Result<T, Error>) -> Result<T, Error> {
        for _ in 0..CONFIG_READ_ATTEMPTS {
            let before = self.read_config_generation();
            let result = f();
            if self.read_config_generation() == before {
                return result;
            }
        }
        Err(Error::IoError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_offsets_are_bounded() {
        assert_eq!(notify_offset(0, 4, 0x1000), Some(0));
        assert_eq!(notify_offset(2, 4, 0x1000), Some(8));
        assert_eq!(notify_offset(0x3ff, 4, 0x1000), Some(0xffc));
        assert_eq!(notify_offset(0x400, 4, 0x1000), None);
        assert_eq!(
            notify_offset(u16::MAX, u32::MAX, usize::MAX),
            Some(0xfffe_ffff_0001)
        );
        assert_eq!(notify_offset(u16::MAX, u32::MAX, 0x1000), None);
        assert_eq!(
            notify_offset(0, 0, 1),
            None,
            "a 16-bit register needs 2 bytes"
        );
    }
}
