//! The virtio vendor capabilities in a function's configuration space (virtio 1.2 §4.1.4): where
//! in which BAR the common, notify, ISR and device-specific structures live.
//!
//! The list is device-provided: the walk is bounded (a looping list ends), pointers must stay in
//! the standard 256-byte header and be 4-byte aligned, and every structure is only accepted
//! after [`Region::within`] checks it against its BAR with overflow-checked arithmetic.
//! (`virtio-drivers`' own PCI transport adds `offset + length` in `u32` unchecked, so a device
//! could wrap the sum and place a structure outside its BAR; ours cannot.)

use super::PciSetupError;
use crate::drivers::pci::config::{Bdf, ConfigSpace};

/// Capability ID of vendor-specific capabilities.
const CAP_ID_VENDOR: u8 = 0x09;
/// Status register bit: the capability list exists.
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
/// More capabilities than fit in 192 bytes means a loop.
const MAX_CAPABILITIES: usize = 48;

/// `cfg_type` values.
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
const ISR_CFG: u8 = 3;
const DEVICE_CFG: u8 = 4;

/// Smallest acceptable sizes of the structures.
pub const COMMON_CFG_LEN: u32 = 0x38;
const NOTIFY_MIN_LEN: u32 = 2;
const ISR_MIN_LEN: u32 = 1;

/// A structure inside a BAR, as the capability states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// BAR index (0..=5).
    pub bar: u8,
    /// Offset inside the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

impl Region {
    /// The region's byte offset range inside a BAR of `bar_size` bytes, if it fits.
    pub fn within(&self, bar_size: u64) -> Option<core::ops::Range<u64>> {
        let start = u64::from(self.offset);
        let end = start.checked_add(u64::from(self.length))?;
        (end <= bar_size).then_some(start..end)
    }
}

/// The structures a modern virtio-pci function must offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: Region,
    /// Notification area.
    pub notify: Region,
    /// Bytes between the notify addresses of consecutive `queue_notify_off` values.
    pub notify_multiplier: u32,
    /// ISR status.
    pub isr: Region,
    /// Device-specific configuration, if the device has one.
    pub device: Option<Region>,
}

fn read_u8(space: &impl ConfigSpace, bdf: Bdf, offset: u16) -> u8 {
    let word = space.read_u32(bdf, offset & !3);
    (word >> (8 * (offset & 3))) as u8
}

/// Finds the virtio structures of `bdf`. The first usable capability of each type wins, as the
/// specification asks; capabilities naming a reserved BAR (> 5) or too short are skipped.
pub fn find(space: &impl ConfigSpace, bdf: Bdf) -> Result<VirtioCaps, PciSetupError> {
    if space.read_u32(bdf, 0x04) & STATUS_CAPABILITIES == 0 {
        return Err(PciSetupError::NoCapabilities);
    }
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    let mut pointer = u16::from(read_u8(space, bdf, 0x34) & 0xfc);
    let mut walked = 0;
    while pointer != 0 {
        if !(0x40..=0xfc).contains(&pointer) {
            return Err(PciSetupError::BadCapabilityPointer(pointer));
        }
        walked += 1;
        if walked > MAX_CAPABILITIES {
            return Err(PciSetupError::CapabilityLoop);
        }
        let header = space.read_u32(bdf, pointer);
        let id = header as u8;
        let next = u16::from((header >> 8) as u8 & 0xfc);
        let cap_len = (header >> 16) as u8;
        let cfg_type = (header >> 24) as u8;
        // The fields read below end at +16 (+20 for notify); all inside the 256-byte header.
        if id == CAP_ID_VENDOR && cap_len >= 16 && pointer <= 0xfc - 16 {
            let bar = read_u8(space, bdf, pointer + 4);
            let region = Region {
                bar,
                offset: space.read_u32(bdf, pointer + 8),
                length: space.read_u32(bdf, pointer + 12),
            };
            if bar <= 5 {
                match cfg_type {
                    COMMON_CFG if common.is_none() && region.length >= COMMON_CFG_LEN => {
                        common = Some(region)
                    }
                    NOTIFY_CFG
                        if notify.is_none()
                            && cap_len >= 20
                            && pointer <= 0xfc - 20
                            && region.length >= NOTIFY_MIN_LEN =>
                    {
                        notify = Some((region, space.read_u32(bdf, pointer + 16)));
                    }
                    ISR_CFG if isr.is_none() && region.length >= ISR_MIN_LEN => isr = Some(region),
                    DEVICE_CFG if device.is_none() => device = Some(region),
                    _ => {}
                }
            }
        }
        pointer = next;
    }
    let common = common.ok_or(PciSetupError::MissingCapability("common"))?;
    let (notify, notify_multiplier) = notify.ok_or(PciSetupError::MissingCapability("notify"))?;
    let isr = isr.ok_or(PciSetupError::MissingCapability("ISR"))?;
    if common.offset % 4 != 0 || notify.offset % 2 != 0 || notify_multiplier % 2 != 0 {
        return Err(PciSetupError::Misaligned);
    }
    Ok(VirtioCaps {
        common,
        notify,
        notify_multiplier,
        isr,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeFunction;
    use super::*;

    fn bdf() -> Bdf {
        Bdf::new(0, 3, 0).unwrap()
    }

    /// QEMU's layout for a modern virtio-pci device: four structures in BAR 4.
    fn qemu_like() -> FakeFunction {
        let mut f = FakeFunction::virtio(0x1042);
        f.add_vendor_cap(0x84, COMMON_CFG, 4, 0x0000, 0x1000, None);
        f.add_vendor_cap(0x70, ISR_CFG, 4, 0x1000, 0x1000, None);
        f.add_vendor_cap(0x60, DEVICE_CFG, 4, 0x2000, 0x1000, None);
        f.add_vendor_cap(0x48, NOTIFY_CFG, 4, 0x3000, 0x1000, Some(4));
        f
    }

    #[test]
    fn finds_qemu_structures() {
        let f = qemu_like();
        let caps = find(&f, bdf()).unwrap();
        assert_eq!(
            caps.common,
            Region {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.notify.offset, 0x3000);
        assert_eq!(caps.notify_multiplier, 4);
        assert_eq!(caps.isr.offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
    }

    #[test]
    fn refuses_missing_looping_and_wild_lists() {
        let mut f = FakeFunction::virtio(0x1042);
        assert_eq!(find(&f, bdf()), Err(PciSetupError::NoCapabilities));
        f.add_vendor_cap(0x84, COMMON_CFG, 4, 0, 0x1000, None);
        assert_eq!(
            find(&f, bdf()),
            Err(PciSetupError::MissingCapability("notify"))
        );
        // A capability pointing at itself.
        let looping = qemu_like();
        looping.set_u8(0x85, 0x84);
        assert_eq!(find(&looping, bdf()), Err(PciSetupError::CapabilityLoop));
        // A pointer into the header.
        let wild = qemu_like();
        wild.set_u8(0x34, 0x10);
        assert_eq!(
            find(&wild, bdf()),
            Err(PciSetupError::BadCapabilityPointer(0x10))
        );
        // An odd notify multiplier.
        let mut odd = FakeFunction::virtio(0x1042);
        odd.add_vendor_cap(0x84, COMMON_CFG, 4, 0, 0x1000, None);
        odd.add_vendor_cap(0x70, ISR_CFG, 4, 0x1000, 0x1000, None);
        odd.add_vendor_cap(0x50, NOTIFY_CFG, 4, 0x3000, 0x1000, Some(3));
        assert_eq!(find(&odd, bdf()), Err(PciSetupError::Misaligned));
    }

    #[test]
    fn skips_reserved_bars_and_short_structures() {
        let mut f = FakeFunction::virtio(0x1042);
        f.add_vendor_cap(0x90, COMMON_CFG, 7, 0, 0x1000, None);
        f.add_vendor_cap(0x84, COMMON_CFG, 4, 0, 0x10, None);
        f.add_vendor_cap(0x70, ISR_CFG, 4, 0x1000, 0x1000, None);
        f.add_vendor_cap(0x50, NOTIFY_CFG, 4, 0x3000, 0x1000, Some(4));
        assert_eq!(
            find(&f, bdf()),
            Err(PciSetupError::MissingCapability("common"))
        );
    }

    #[test]
    fn regions_are_checked_without_overflow() {
        let region = Region {
            bar: 4,
            offset: 0xffff_f000,
            length: 0x2000,
        };
        // In u32 the end would wrap to 0x1000 and pass a naive check.
        assert_eq!(region.within(0x4000), None);
        let fits = Region {
            bar: 4,
            offset: 0x3000,
            length: 0x1000,
        };
        assert_eq!(fits.within(0x4000), Some(0x3000..0x4000));
        assert_eq!(fits.within(0x3fff), None);
    }
}
