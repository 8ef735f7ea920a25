//! Memory BARs: sizing and placement. Ward's loader is the firmware and assigns no BARs, so the
//! kernel places them itself, in a window below the IOAPIC that the kernel's page tables already
//! map uncached (the "4 GiB − 32 MiB" MMIO window of `arch::paging::layout`) and that lies in
//! q35's 32-bit PCI hole. Sizes come from the device: each must be a power of two the window can
//! hold, or the device is refused.

use super::{ConfigAccess, PciSetupError};
use crate::drivers::pci::config::Bdf;

/// Where BARs go: from the start of the kernel's high MMIO window up to the IOAPIC.
pub const BAR_WINDOW_START: u64 = 0xfe00_0000;
/// End of the BAR window (the IOAPIC's page).
pub const BAR_WINDOW_END: u64 = 0xfec0_0000;

// The kernel maps MMIO uncached only inside its high-MMIO window: BARs placed anywhere else
// would be unmapped (or mapped as cacheable RAM), so the two must not drift apart.
const _: () = {
    let mmio = crate::arch::paging::layout::HIGH_MMIO;
    assert!(BAR_WINDOW_START >= mmio.start.as_u64() && BAR_WINDOW_END <= mmio.end.as_u64());
};

/// Offset of BAR 0; BAR n is at `BAR0 + 4 n`.
const BAR0: u16 = 0x10;
/// Command register bits.
pub const COMMAND_MEMORY: u32 = 1 << 1;
/// Bus mastering (the device may DMA).
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// I/O space decoding.
pub const COMMAND_IO: u32 = 1 << 0;

/// A memory BAR as placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Bus address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Hands out naturally aligned ranges of the BAR window.
#[derive(Debug)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// The whole window.
    pub const fn new() -> Self {
        Self::with_window(BAR_WINDOW_START, BAR_WINDOW_END)
    }

    /// A custom window (tests).
    pub const fn with_window(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// A range of `size` bytes (a power of two) aligned to `size`.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let start = self.next.checked_add(size - 1)? & !(size - 1);
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

impl Default for BarAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Size of a memory BAR from what it reads after all-ones were written (`high` for 64-bit
/// BARs). `None` when it is not implemented; an error when the mask is not a valid size.
pub fn decode_size(low: u32, high: Option<u32>) -> Result<Option<u64>, PciSetupError> {
    let mask = (u64::from(high.unwrap_or(u32::MAX)) << 32) | u64::from(low & !0xf);
    let mask = if high.is_none() {
        mask | 0xffff_ffff_0000_0000
    } else {
        mask
    };
    if low & !0xf == 0 && high.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let size = (!mask).wrapping_add(1);
    // A real size mask is ones from the top down to the size bit: `mask + size` wraps to 0.
    if size < 16 || !size.is_power_of_two() || mask.wrapping_add(size) != 0 {
        return Err(PciSetupError::BadBarSize(mask));
    }
    Ok(Some(size))
}

/// Sizes every memory BAR of `bdf` and places it from `allocator`, with decoding off while the
/// BARs change; leaves memory decoding and bus mastering on, I/O decoding off. Returns the
/// placed BARs by index.
pub fn assign(
    space: &impl ConfigAccess,
    bdf: Bdf,
    allocator: &mut BarAllocator,
) -> Result<[Option<Bar>; 6], PciSetupError> {
    let command = space.read_u32(bdf, 0x04);
    let off = command & !(COMMAND_MEMORY | COMMAND_IO | COMMAND_BUS_MASTER) & 0xffff;
    space.write_u32(bdf, 0x04, off);
    let mut bars = [None; 6];
    let mut index = 0;
    while index < 6 {
        let offset = BAR0 + 4 * index as u16;
        let original = space.read_u32(bdf, offset);
        if original & 1 == 1 {
            // An I/O BAR: left unused, I/O decoding stays off.
            index += 1;
            continue;
        }
        let is_64 = (original >> 1) & 0b11 == 0b10;
        if is_64 && index == 5 {
            return Err(PciSetupError::BadBar(index as u8));
        }
        space.write_u32(bdf, offset, u32::MAX);
        let low = space.read_u32(bdf, offset);
        let high = if is_64 {
            space.write_u32(bdf, offset + 4, u32::MAX);
            Some(space.read_u32(bdf, offset + 4))
        } else {
            None
        };
        if let Some(size) = decode_size(low, high)? {
            let address = allocator
                .allocate(size)
                .ok_or(PciSetupError::BarWindowFull(size))?;
            space.write_u32(bdf, offset, address as u32);
            if is_64 {
                space.write_u32(bdf, offset + 4, (address >> 32) as u32);
            }
            bars[index] = Some(Bar { address, size });
        } else {
            space.write_u32(bdf, offset, 0);
            if is_64 {
                space.write_u32(bdf, offset + 4, 0);
            }
        }
        index += if is_64 { 2 } else { 1 };
    }
    space.write_u32(bdf, 0x04, off | COMMAND_MEMORY | COMMAND_BUS_MASTER);
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeFunction;
    use super::*;
    use crate::drivers::pci::config::ConfigSpace;

    #[test]
    fn sizes_decode() {
        // 16 KiB 64-bit prefetchable BAR: low reads 0xffffc00c, high 0xffffffff.
        assert_eq!(decode_size(0xffff_c00c, Some(u32::MAX)), Ok(Some(0x4000)));
        // 4 KiB 32-bit BAR.
        assert_eq!(decode_size(0xffff_f000, None), Ok(Some(0x1000)));
        // Not implemented.
        assert_eq!(decode_size(0, None), Ok(None));
        assert_eq!(decode_size(0xc, Some(0)), Ok(None));
        // 8 GiB 64-bit BAR.
        assert_eq!(decode_size(0xc, Some(0xffff_fffe)), Ok(Some(0x2_0000_0000)));
        // Holes in the mask are not a size.
        assert!(decode_size(0xfff0_f000, None).is_err());
    }

    #[test]
    fn allocator_aligns_and_stops_at_the_end() {
        let mut a = BarAllocator::with_window(0x1000, 0x10000);
        assert_eq!(a.allocate(0x1000), Some(0x1000));
        assert_eq!(a.allocate(0x4000), Some(0x4000));
        assert_eq!(a.allocate(0x3000), None, "not a power of two");
        assert_eq!(a.allocate(0x8000), Some(0x8000));
        assert_eq!(a.allocate(0x10), None, "window full");
        assert_eq!(BarAllocator::new().allocate(1 << 30), None);
    }

    #[test]
    fn assigns_qemu_like_bars() {
        let bdf = Bdf::new(0, 3, 0).unwrap();
        let mut f = FakeFunction::virtio(0x1042);
        f.add_bar(1, 0x1000, false);
        f.add_bar(4, 0x4000, true);
        let mut allocator = BarAllocator::new();
        let bars = assign(&f, bdf, &mut allocator).unwrap();
        assert_eq!(
            bars[1],
            Some(Bar {
                address: BAR_WINDOW_START,
                size: 0x1000
            })
        );
        assert_eq!(
            bars[4],
            Some(Bar {
                address: BAR_WINDOW_START + 0x4000,
                size: 0x4000
            })
        );
        assert_eq!(bars[0], None);
        assert_eq!(
            f.read_u32(bdf, 0x20),
            (BAR_WINDOW_START as u32 + 0x4000) | 0xc
        );
        assert_eq!(
            f.read_u32(bdf, 0x04) & 0x7,
            COMMAND_MEMORY | COMMAND_BUS_MASTER
        );
        // A device asking for more than the window holds is refused.
        let mut greedy = FakeFunction::virtio(0x1042);
        greedy.add_bar(0, 1 << 30, false);
        assert_eq!(
            assign(&greedy, bdf, &mut BarAllocator::new()),
            Err(PciSetupError::BarWindowFull(1 << 30))
        );
    }
}
