//! The modern virtio-pci transport (virtio 1.2 §4.1), written for untrusted devices: the
//! capability walk (`caps`), BAR placement (`bars`), bounds-checked register access (`mmio`)
//! and the `virtio_drivers::transport::Transport` implementation (`transport`).

pub mod bars;
pub mod caps;
pub mod mmio;
pub mod transport;

use crate::drivers::pci::config::{Bdf, ConfigSpace};
use core::fmt;

/// Configuration space with writes (BARs and the command register).
pub trait ConfigAccess: ConfigSpace {
    /// Writes the 32-bit register at `offset` (a multiple of 4 below 4096).
    fn write_u32(&self, bdf: Bdf, offset: u16, value: u32);
}

#[cfg(target_os = "none")]
impl ConfigAccess for crate::drivers::pci::ecam::Ecam {
    fn write_u32(&self, bdf: Bdf, offset: u16, value: u32) {
        use crate::drivers::pci::ecam::Q35_ECAM_BASE;
        if offset >= 4096 || !offset.is_multiple_of(4) {
            return;
        }
        let address = Q35_ECAM_BASE + bdf.ecam_offset() + u64::from(offset);
        // SAFETY: the q35 ECAM window is identity-mapped uncached by the kernel's tables (the
        // only ECAM this kernel uses), and `bdf`/`offset` keep the address inside it.
        unsafe { <u32 as crate::arch::mmio::Register>::store(address as *mut u32, value) };
    }
}

/// Why a PCI function could not be set up as a virtio device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSetupError {
    /// The function has no capability list.
    NoCapabilities,
    /// A capability pointer outside 0x40..=0xfc.
    BadCapabilityPointer(u16),
    /// The capability list does not end.
    CapabilityLoop,
    /// A required virtio structure is missing.
    MissingCapability(&'static str),
    /// A structure or the notify multiplier is misaligned.
    Misaligned,
    /// A BAR's size mask is not a power-of-two size (the mask as read).
    BadBarSize(u64),
    /// A 64-bit BAR in the last slot.
    BadBar(u8),
    /// No room left in the BAR window for a BAR of this size.
    BarWindowFull(u64),
    /// A structure names a BAR that is not a placed memory BAR.
    UnplacedBar(u8),
    /// A structure does not fit inside its BAR.
    OutsideBar(u8),
}

impl fmt::Display for PciSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCapabilities => f.write_str("no PCI capability list"),
            Self::BadCapabilityPointer(p) => write!(f, "capability pointer {p:#x} out of range"),
            Self::CapabilityLoop => f.write_str("capability list does not end"),
            Self::MissingCapability(which) => {
                write!(f, "no usable virtio {which} configuration capability")
            }
            Self::Misaligned => f.write_str("virtio structure or notify multiplier misaligned"),
            Self::BadBarSize(mask) => write!(f, "BAR size mask {mask:#x} is not a size"),
            Self::BadBar(index) => write!(f, "BAR {index} is malformed"),
            Self::BarWindowFull(size) => {
                write!(f, "no room for a {size:#x}-byte BAR in the MMIO window")
            }
            Self::UnplacedBar(index) => write!(f, "structure in BAR {index}, which is not placed"),
            Self::OutsideBar(index) => write!(f, "structure does not fit inside BAR {index}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A whole 4 KiB configuration space of one function, with BAR sizing behaviour.
    use super::*;
    use core::cell::RefCell;

    pub struct FakeFunction {
        pub bytes: RefCell<[u8; 4096]>,
        /// Size masks of implemented BARs (by index).
        pub bar_sizes: [Option<(u64, bool)>; 6],
    }

    impl FakeFunction {
        /// A modern virtio function with an empty capability list.
        pub fn virtio(device_id: u16) -> Self {
            let f = Self {
                bytes: RefCell::new([0; 4096]),
                bar_sizes: [None; 6],
            };
            f.set_u32(0, 0x1af4 | (u32::from(device_id) << 16));
            f
        }

        pub fn set_u8(&self, offset: usize, value: u8) {
            self.bytes.borrow_mut()[offset] = value;
        }

        pub fn set_u32(&self, offset: usize, value: u32) {
            self.bytes.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }

        fn get_u32(&self, offset: usize) -> u32 {
            let b = self.bytes.borrow();
            u32::from_le_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
        }

        /// Prepends a vendor capability at `at`.
        pub fn add_vendor_cap(
            &mut self,
            at: usize,
            cfg_type: u8,
            bar: u8,
            offset: u32,
            length: u32,
            multiplier: Option<u32>,
        ) {
            let head = self.bytes.borrow()[0x34];
            let len = if multiplier.is_some() { 20 } else { 16 };
            self.set_u32(
                at,
                0x09 | (u32::from(head) << 8) | (len << 16) | (u32::from(cfg_type) << 24),
            );
            self.set_u32(at + 4, u32::from(bar));
            self.set_u32(at + 8, offset);
            self.set_u32(at + 12, length);
            if let Some(m) = multiplier {
                self.set_u32(at + 16, m);
            }
            self.set_u8(0x34, at as u8);
            let status = self.get_u32(4) | (1 << 20);
            self.set_u32(4, status);
        }

        /// Declares BAR `index` of `size` bytes.
        pub fn add_bar(&mut self, index: usize, size: u64, is_64: bool) {
            self.bar_sizes[index] = Some((size, is_64));
            let flags = if is_64 { 0xc } else { 0 };
            self.set_u32(0x10 + 4 * index, flags);
        }
    }

    impl ConfigSpace for FakeFunction {
        fn read_u32(&self, _bdf: Bdf, offset: u16) -> u32 {
            let offset = usize::from(offset);
            if offset >= 4096 || !offset.is_multiple_of(4) {
                return u32::MAX;
            }
            self.get_u32(offset)
        }
    }

    impl ConfigAccess for FakeFunction {
        fn write_u32(&self, _bdf: Bdf, offset: u16, value: u32) {
            let offset = usize::from(offset);
            if (0x10..0x28).contains(&offset) {
                let index = (offset - 0x10) / 4;
                // The high half of a 64-bit BAR belongs to the BAR below it.
                let (bar, high) = match (
                    index.checked_sub(1).and_then(|i| self.bar_sizes[i]),
                    self.bar_sizes[index],
                ) {
                    (Some((size, true)), _) => (Some((size, true)), true),
                    (_, own) => (own, false),
                };
                let stored = match bar {
                    None => 0,
                    Some((size, is_64)) => {
                        let mask = !(size - 1);
                        if high {
                            value & (mask >> 32) as u32
                        } else {
                            (value & mask as u32 & !0xf) | if is_64 { 0xc } else { 0 }
                        }
                    }
                };
                self.set_u32(offset, stored);
                return;
            }
            self.set_u32(offset, value);
        }
    }
}
