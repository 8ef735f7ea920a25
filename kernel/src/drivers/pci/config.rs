//! Configuration-space layout and the decoding of a function's header. Every value comes from
//! the (untrusted) device or host; here it is only read and reported, never used as an index.

use core::fmt;

/// Reads configuration space. Implementations return all-ones for absent functions, as the
/// hardware does.
pub trait ConfigSpace {
    /// The 32-bit register at `offset` (a multiple of 4, below 4096) of `bdf`.
    fn read_u32(&self, bdf: Bdf, offset: u16) -> u32;
}

/// Bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl Bdf {
    /// A BDF; `None` when device or function is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device < 32 && function < 8 {
            Some(Self {
                bus,
                device,
                function,
            })
        } else {
            None
        }
    }

    /// Byte offset of this function's 4 KiB configuration space inside an ECAM window.
    pub const fn ecam_offset(self) -> u64 {
        ((self.bus as u64) << 20) | ((self.device as u64) << 15) | ((self.function as u64) << 12)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Offsets of the common header registers.
pub mod offset {
    /// Vendor ID (low 16) and device ID (high 16).
    pub const ID: u16 = 0x00;
    /// Command (low 16) and status (high 16).
    pub const COMMAND_STATUS: u16 = 0x04;
    /// Revision, prog-if, subclass, class (low to high byte).
    pub const CLASS_REVISION: u16 = 0x08;
    /// Cache line, latency, header type, BIST.
    pub const HEADER_TYPE: u16 = 0x0c;
    /// Type 1 header: primary, secondary, subordinate bus numbers and latency.
    pub const BRIDGE_BUSES: u16 = 0x18;
    /// Type 0 header: subsystem vendor (low 16) and subsystem ID (high 16).
    pub const SUBSYSTEM: u16 = 0x2c;
}

/// What a function's header says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision.
    pub revision: u8,
    /// Header layout (0 = endpoint, 1 = PCI-to-PCI bridge), without the multi-function bit.
    pub header_layout: u8,
    /// Whether function 0 announces more functions.
    pub multi_function: bool,
    /// Type 1 headers: the secondary bus number.
    pub secondary_bus: Option<u8>,
}

impl PciFunction {
    /// Reads the header of `bdf`; `None` when no function answers.
    pub fn read(space: &impl ConfigSpace, bdf: Bdf) -> Option<Self> {
        let id = space.read_u32(bdf, offset::ID);
        let vendor_id = id as u16;
        if vendor_id == 0xffff || vendor_id == 0 {
            return None;
        }
        let class = space.read_u32(bdf, offset::CLASS_REVISION).to_le_bytes();
        let header = (space.read_u32(bdf, offset::HEADER_TYPE) >> 16) as u8;
        let header_layout = header & 0x7f;
        let secondary_bus =
            (header_layout == 1).then(|| (space.read_u32(bdf, offset::BRIDGE_BUSES) >> 8) as u8);
        Some(Self {
            bdf,
            vendor_id,
            device_id: (id >> 16) as u16,
            revision: class[0],
            prog_if: class[1],
            subclass: class[2],
            class: class[3],
            header_layout,
            multi_function: header & 0x80 != 0,
            secondary_bus,
        })
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory configuration space for tests.
    use super::*;
    use alloc::collections::BTreeMap;

    /// Functions with their first 64 bytes of configuration space.
    #[derive(Default)]
    pub struct FakeSpace {
        pub functions: BTreeMap<Bdf, [u32; 16]>,
    }

    impl FakeSpace {
        pub fn add(&mut self, bdf: Bdf, vendor: u16, device: u16, class: [u8; 3], header: u8) {
            let mut regs = [0u32; 16];
            regs[0] = u32::from(vendor) | (u32::from(device) << 16);
            regs[2] = u32::from_le_bytes([1, class[2], class[1], class[0]]);
            regs[3] = u32::from(header) << 16;
            self.functions.insert(bdf, regs);
        }
    }

    impl ConfigSpace for FakeSpace {
        fn read_u32(&self, bdf: Bdf, offset: u16) -> u32 {
            self.functions.get(&bdf).map_or(u32::MAX, |regs| {
                regs.get(usize::from(offset / 4)).copied().unwrap_or(0)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSpace;
    use super::*;

    #[test]
    fn ecam_offsets_and_names() {
        let bdf = Bdf::new(1, 3, 2).unwrap();
        assert_eq!(bdf.ecam_offset(), 0x11_a000);
        assert_eq!(bdf.to_string(), "01:03.2");
        assert!(Bdf::new(0, 32, 0).is_none() && Bdf::new(0, 0, 8).is_none());
        assert_eq!(Bdf::new(255, 31, 7).unwrap().ecam_offset(), 0xfff_f000);
    }

    #[test]
    fn decodes_a_header() {
        let mut space = FakeSpace::default();
        let blk = Bdf::new(0, 3, 0).unwrap();
        space.add(blk, 0x1af4, 0x1042, [0x01, 0x00, 0x00], 0x80);
        let f = PciFunction::read(&space, blk).unwrap();
        assert_eq!((f.vendor_id, f.device_id), (0x1af4, 0x1042));
        assert_eq!((f.class, f.subclass, f.prog_if, f.revision), (1, 0, 0, 1));
        assert!(f.multi_function);
        assert_eq!(f.header_layout, 0);
        assert_eq!(f.secondary_bus, None);
        assert!(PciFunction::read(&space, Bdf::new(0, 4, 0).unwrap()).is_none());
    }

    #[test]
    fn bridges_report_their_secondary_bus() {
        let mut space = FakeSpace::default();
        let bridge = Bdf::new(0, 1, 0).unwrap();
        space.add(bridge, 0x1b36, 0x000c, [0x06, 0x04, 0x00], 0x01);
        space.functions.get_mut(&bridge).unwrap()[6] = 0x00_05_05_00;
        assert_eq!(
            PciFunction::read(&space, bridge).unwrap().secondary_bus,
            Some(5)
        );
    }
}
