//! The physical frame allocator over the loader's memory map.
//!
//! Frames are handed out at boot to long-lived owners — page tables, stacks, the heap, the shared
//! pool — which manage reuse inside themselves, so this allocator only ever takes (first fit,
//! lowest address first) and never needs a free list. Only `Usable` RAM at or above 1 MiB is
//! used: the first megabyte holds legacy BIOS structures, and page 0 stays unmapped so a null
//! pointer faults.

use crate::mm::address::{PAGE_SIZE, PhysAddr, PhysRange};
use ward_bootinfo::{MemoryKind, MemoryRegion};

/// Lowest physical address handed out.
pub const LOWEST_FRAME: u64 = 0x10_0000;
/// Most free ranges tracked; the q35 map has a handful.
pub const MAX_RANGES: usize = 32;

/// First-fit allocator of contiguous 4 KiB frames.
#[derive(Debug, Clone)]
pub struct FrameAllocator {
    ranges: [PhysRange; MAX_RANGES],
    count: usize,
    /// Usable bytes ignored because a region overlapped another or the table was full.
    dropped_bytes: u64,
}

impl FrameAllocator {
    /// Collects the usable RAM of `regions`. Regions that overlap an earlier usable region are
    /// dropped rather than trusted, so no frame is ever handed out twice.
    pub fn from_memory_map(regions: &[MemoryRegion]) -> Self {
        let mut allocator = Self {
            ranges: [PhysRange::default(); MAX_RANGES],
            count: 0,
            dropped_bytes: 0,
        };
        for region in regions {
            if MemoryKind::from_raw(region.kind) != Some(MemoryKind::Usable) {
                continue;
            }
            let Some(range) = PhysRange::from_start_len(PhysAddr::new(region.start), region.length)
            else {
                continue;
            };
            let floor = PhysAddr::new(LOWEST_FRAME);
            let range = PhysRange {
                start: range.start.max(floor),
                end: range.end.max(floor),
            }
            .shrink_to_pages();
            if range.is_empty() {
                continue;
            }
            if allocator.count == MAX_RANGES || allocator.overlaps(&range) {
                allocator.dropped_bytes += range.len();
                continue;
            }
            allocator.ranges[allocator.count] = range;
            allocator.count += 1;
        }
        allocator.ranges[..allocator.count].sort_unstable_by_key(|r| r.start);
        allocator
    }

    fn overlaps(&self, range: &PhysRange) -> bool {
        self.ranges().iter().any(|r| r.overlaps(range))
    }

    /// The free ranges, sorted by address.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.count]
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.ranges().iter().map(PhysRange::len).sum()
    }

    /// Usable bytes that were refused (overlapping or beyond [`MAX_RANGES`]).
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// Takes `pages` contiguous frames whose start is a multiple of `align` bytes (a power of
    /// two, at least 4 KiB). Alignment padding stays free.
    pub fn allocate_aligned(&mut self, pages: u64, align: u64) -> Option<PhysRange> {
        let bytes = pages.checked_mul(PAGE_SIZE)?;
        if bytes == 0 || !align.is_power_of_two() || align < PAGE_SIZE {
            return None;
        }
        for index in 0..self.count {
            let range = self.ranges[index];
            let Some(start) = range.start.align_up(align) else {
                continue;
            };
            let Some(end) = start.checked_add(bytes) else {
                continue;
            };
            if end > range.end {
                continue;
            }
            let taken = PhysRange { start, end };
            let before = PhysRange {
                start: range.start,
                end: start,
            };
            let after = PhysRange {
                start: end,
                end: range.end,
            };
            self.replace(index, before, after);
            return Some(taken);
        }
        None
    }

    /// Takes `pages` contiguous frames.
    pub fn allocate(&mut self, pages: u64) -> Option<PhysRange> {
        self.allocate_aligned(pages, PAGE_SIZE)
    }

    /// Removes and returns the largest free range, keeping `keep_bytes` (rounded up to pages)
    /// free at its start for later frame allocations. Used to give the heap one big block.
    pub fn take_largest(&mut self, keep_bytes: u64) -> Option<PhysRange> {
        let keep = PhysAddr::new(keep_bytes).align_up(PAGE_SIZE)?.as_u64();
        let index = (0..self.count).max_by_key(|&i| self.ranges[i].len())?;
        let range = self.ranges[index];
        if range.len() <= keep {
            return None;
        }
        let split = PhysAddr::new(range.start.as_u64() + keep);
        self.replace(
            index,
            PhysRange {
                start: range.start,
                end: split,
            },
            PhysRange::default(),
        );
        Some(PhysRange {
            start: split,
            end: range.end,
        })
    }

    /// Replaces range `index` by the non-empty ones of `first`, `second`, keeping order.
    fn replace(&mut self, index: usize, first: PhysRange, second: PhysRange) {
        let mut pieces = [first, second].into_iter().filter(|r| !r.is_empty());
        match (pieces.next(), pieces.next()) {
            (None, _) => {
                self.ranges.copy_within(index + 1..self.count, index);
                self.count -= 1;
            }
            (Some(only), None) => self.ranges[index] = only,
            (Some(low), Some(high)) => {
                if self.count == MAX_RANGES {
                    // No room to split: give up the padding below rather than lose track of
                    // the larger remainder.
                    self.dropped_bytes += low.len();
                    self.ranges[index] = high;
                    return;
                }
                self.ranges.copy_within(index + 1..self.count, index + 2);
                self.ranges[index] = low;
                self.ranges[index + 1] = high;
                self.count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, length: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion {
            start,
            length,
            kind: kind as u32,
            reserved: 0,
        }
    }

    fn q35_like() -> [MemoryRegion; 6] {
        [
            region(0, 0x9fc00, MemoryKind::Usable),
            region(0x9fc00, 0x400, MemoryKind::Reserved),
            region(0x10_0000, 0x70_0000, MemoryKind::Usable),
            region(0x80_0000, 0x20_0000, MemoryKind::KernelImage),
            region(0xa0_0000, 0x1f60_0800, MemoryKind::Usable),
            region(0x2000_0000, 0x1000, MemoryKind::Loader),
        ]
    }

    #[test]
    fn only_usable_ram_above_one_mib_page_aligned() {
        let frames = FrameAllocator::from_memory_map(&q35_like());
        assert_eq!(
            frames.ranges(),
            &[
                PhysRange {
                    start: PhysAddr::new(0x10_0000),
                    end: PhysAddr::new(0x80_0000)
                },
                PhysRange {
                    start: PhysAddr::new(0xa0_0000),
                    end: PhysAddr::new(0x2000_0000)
                },
            ]
        );
        assert_eq!(frames.free_bytes(), 0x70_0000 + 0x1f60_0000);
    }

    #[test]
    fn first_fit_with_alignment_keeps_padding() {
        let mut frames = FrameAllocator::from_memory_map(&q35_like());
        let a = frames.allocate(1).unwrap();
        assert_eq!(a.start, PhysAddr::new(0x10_0000));
        let b = frames.allocate_aligned(1, 0x20_0000).unwrap();
        assert_eq!(b.start, PhysAddr::new(0x20_0000));
        // The padding between them is still there.
        let c = frames.allocate(1).unwrap();
        assert_eq!(c.start, PhysAddr::new(0x10_1000));
        // Too big for the low range: comes from the high one.
        let d = frames.allocate(0x800).unwrap();
        assert_eq!(d.start, PhysAddr::new(0xa0_0000));
        let all = [a, b, c, d];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert!(!x.overlaps(y));
            }
        }
        assert_eq!(frames.allocate(0), None);
        assert_eq!(frames.allocate_aligned(1, 3000), None);
        assert_eq!(frames.allocate(u64::MAX), None);
    }

    #[test]
    fn exhaustion_and_largest_range() {
        let mut frames =
            FrameAllocator::from_memory_map(&[region(0x10_0000, 0x4000, MemoryKind::Usable)]);
        assert!(frames.allocate(5).is_none());
        assert!(frames.allocate(4).is_some());
        assert!(frames.allocate(1).is_none());
        assert_eq!(frames.free_bytes(), 0);

        let mut frames = FrameAllocator::from_memory_map(&q35_like());
        let heap = frames.take_largest(0x10_0000).unwrap();
        assert_eq!(
            heap,
            PhysRange {
                start: PhysAddr::new(0xb0_0000),
                end: PhysAddr::new(0x2000_0000)
            }
        );
        assert_eq!(frames.free_bytes(), 0x70_0000 + 0x10_0000);
        assert!(frames.allocate(0x100).is_some());
    }

    #[test]
    fn overlapping_regions_are_refused() {
        let unknown_kind = MemoryRegion {
            start: 0x40_0000,
            length: 0x1000,
            kind: 9,
            reserved: 0,
        };
        let frames = FrameAllocator::from_memory_map(&[
            region(0x10_0000, 0x10_0000, MemoryKind::Usable),
            region(0x18_0000, 0x10_0000, MemoryKind::Usable),
            region(u64::MAX - 0xfff, 0x2000, MemoryKind::Usable),
            unknown_kind,
        ]);
        assert_eq!(frames.ranges().len(), 1);
        assert_eq!(frames.dropped_bytes(), 0x10_0000);
    }
}
