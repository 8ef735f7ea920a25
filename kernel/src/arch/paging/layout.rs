//! The kernel's virtual address space, decided in one place:
//!
//! | virtual range | what | access |
//! | --- | --- | --- |
//! | `0` … top of RAM | identity map of RAM (not page 0, not the kernel image, not the shared pool) | RW, NX |
//! | device windows (ECAM, 4 GiB − 32 MiB … 4 GiB) | identity map of MMIO | RW, NX, uncached |
//! | [`SHARED_WINDOW`] … | the shared-memory pool (host-visible pages) | RW, NX |
//! | [`STACK_REGION`] … | stacks, one slot each, with an unmapped guard below every stack | RW, NX |
//! | [`KERNEL_BASE`] … | the kernel image: text RX, rodata R, data+bss RW+NX | per segment |

use super::flags::Access;
use crate::mm::address::{PAGE_SIZE, PhysAddr, PhysRange, VirtAddr};
use alloc::vec::Vec;
use ward_bootinfo::{MemoryKind, MemoryRegion};

/// Where the kernel is linked (`link.ld`).
pub const KERNEL_BASE: u64 = 0xFFFF_FFFF_8000_0000;
/// Start of the stack slots (PML4 entry 510).
pub const STACK_REGION: u64 = 0xFFFF_FF00_0000_0000;
/// Virtual distance between two stack slots; everything in a slot below its stack is unmapped.
pub const STACK_SLOT_BYTES: u64 = 8 << 20;
/// Start of the shared-memory pool's mapping (PML4 entry 509).
pub const SHARED_WINDOW: u64 = 0xFFFF_FE80_0000_0000;
/// The top 32 MiB below 4 GiB, identity-mapped uncached: flash, IOAPIC, HPET, LAPIC, and the
/// window the PCI driver places virtio BARs in (checked at compile time in
/// `drivers::virtio::pci::bars`).
pub const HIGH_MMIO: PhysRange = PhysRange {
    start: PhysAddr::new(0xfe00_0000),
    end: PhysAddr::new(0x1_0000_0000),
};

/// The kernel's stacks. Each gets its own slot, so a guard-page fault names its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// The boot CPU's kernel stack (everything but exception handling runs here).
    Kernel,
    /// IST 1: double fault.
    DoubleFault,
    /// IST 2: NMI.
    Nmi,
    /// IST 3: machine check.
    MachineCheck,
    /// IST 4: page fault (so a stack overflow into a guard page can still be reported).
    PageFault,
    /// IST 5: every other exception.
    Exception,
    /// IST 6: the virtualization exceptions, SNP #VC and TDX #VE. They are raised by port I/O,
    /// MMIO and CPUID anywhere — inside the other handlers too (a fault report writes to the
    /// serial port) — so they need a stack no other vector uses.
    Virtualization,
}

impl Stack {
    /// All stacks, in slot order.
    pub const ALL: [Stack; 7] = [
        Stack::Kernel,
        Stack::DoubleFault,
        Stack::Nmi,
        Stack::MachineCheck,
        Stack::PageFault,
        Stack::Exception,
        Stack::Virtualization,
    ];

    /// Slot number.
    pub const fn slot(self) -> u64 {
        self as u64
    }

    /// Size in bytes (whole pages).
    pub const fn size(self) -> u64 {
        match self {
            Self::Kernel => 1 << 20,
            _ => 32 << 10,
        }
    }

    /// The IST index (1-based) the IDT uses for this stack; `None` for the kernel stack.
    pub const fn ist_index(self) -> Option<u8> {
        match self {
            Self::Kernel => None,
            Self::DoubleFault => Some(1),
            Self::Nmi => Some(2),
            Self::MachineCheck => Some(3),
            Self::PageFault => Some(4),
            Self::Exception => Some(5),
            Self::Virtualization => Some(6),
        }
    }

    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::DoubleFault => "double-fault IST",
            Self::Nmi => "NMI IST",
            Self::MachineCheck => "machine-check IST",
            Self::PageFault => "page-fault IST",
            Self::Exception => "exception IST",
            Self::Virtualization => "virtualization-exception IST",
        }
    }

    /// Lowest mapped address of the stack.
    pub const fn bottom(self) -> VirtAddr {
        VirtAddr::new(STACK_REGION + (self.slot() + 1) * STACK_SLOT_BYTES - self.size())
    }

    /// One past the highest address: the initial stack pointer.
    pub const fn top(self) -> VirtAddr {
        VirtAddr::new(STACK_REGION + (self.slot() + 1) * STACK_SLOT_BYTES)
    }

    /// The stack whose mapped range holds `address`, if any.
    pub fn containing(address: VirtAddr) -> Option<Stack> {
        Self::ALL
            .into_iter()
            .find(|s| s.bottom() <= address && address < s.top())
    }

    /// The stack whose guard area (the unmapped part of its slot, below the stack) holds
    /// `address`, if any.
    pub fn guarded_by(address: VirtAddr) -> Option<Stack> {
        let offset = address.as_u64().checked_sub(STACK_REGION)?;
        let stack = *Self::ALL.get((offset / STACK_SLOT_BYTES) as usize)?;
        (address < stack.bottom()).then_some(stack)
    }
}

/// Stack slots reserved per CPU: CPU `n`'s stacks use slots `n * SLOTS_PER_CPU + stack.slot()`,
/// so CPU 0 (the boot CPU) has exactly the slots above.
pub const SLOTS_PER_CPU: u64 = 8;
/// Most CPUs the stack region is laid out for (16 GiB of the 512 GiB PML4 entry).
pub const MAX_CPUS: usize = 256;
/// Kernel stack of an application processor (they run worker tasks only).
pub const AP_KERNEL_STACK_BYTES: u64 = 512 << 10;

impl Stack {
    /// Size of this stack on CPU `cpu` (0 is the boot CPU).
    pub const fn size_on(self, cpu: usize) -> u64 {
        match (cpu, self) {
            (0, _) => self.size(),
            (_, Self::Kernel) => AP_KERNEL_STACK_BYTES,
            _ => self.size(),
        }
    }

    /// One past the highest address of this stack on CPU `cpu`.
    pub const fn top_on(self, cpu: usize) -> VirtAddr {
        VirtAddr::new(
            STACK_REGION + (cpu as u64 * SLOTS_PER_CPU + self.slot() + 1) * STACK_SLOT_BYTES,
        )
    }

    /// Lowest mapped address of this stack on CPU `cpu`.
    pub const fn bottom_on(self, cpu: usize) -> VirtAddr {
        VirtAddr::new(self.top_on(cpu).as_u64() - self.size_on(cpu))
    }

    /// The CPU and stack whose slot holds `address`, and whether it is in the mapped stack
    /// (`true`) or in the unmapped guard area below it (`false`).
    pub fn locate_on_any_cpu(address: VirtAddr) -> Option<(usize, Stack, bool)> {
        let slot = address.as_u64().checked_sub(STACK_REGION)? / STACK_SLOT_BYTES;
        let cpu = usize::try_from(slot / SLOTS_PER_CPU).ok()?;
        if cpu >= MAX_CPUS {
            return None;
        }
        let stack = *Self::ALL.get((slot % SLOTS_PER_CPU) as usize)?;
        Some((cpu, stack, address >= stack.bottom_on(cpu)))
    }
}

/// A virtual range `[start, end)` with the access it is mapped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte.
    pub start: VirtAddr,
    /// One past the last byte.
    pub end: VirtAddr,
    /// Permissions.
    pub access: Access,
}

/// Why the kernel image's section symbols cannot be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayoutError {
    /// A boundary is not page aligned (the linker script guarantees it; this catches a broken
    /// script).
    NotPageAligned(VirtAddr),
    /// Sections out of order or overlapping.
    OutOfOrder,
}

/// The three kernel segments from the linker symbols: text RX, rodata R, data+bss RW.
pub fn kernel_segments(
    text: (VirtAddr, VirtAddr),
    rodata: (VirtAddr, VirtAddr),
    data: (VirtAddr, VirtAddr),
) -> Result<[Segment; 3], ImageLayoutError> {
    let bounds = [text.0, text.1, rodata.0, rodata.1, data.0, data.1];
    if let Some(&bad) = bounds.iter().find(|a| !a.is_aligned(PAGE_SIZE)) {
        return Err(ImageLayoutError::NotPageAligned(bad));
    }
    if bounds.windows(2).any(|w| w[0] > w[1]) || text.0.as_u64() < KERNEL_BASE {
        return Err(ImageLayoutError::OutOfOrder);
    }
    Ok([
        Segment {
            start: text.0,
            end: text.1,
            access: Access::ReadExecute,
        },
        Segment {
            start: rodata.0,
            end: rodata.1,
            access: Access::ReadOnly,
        },
        Segment {
            start: data.0,
            end: data.1,
            access: Access::ReadWrite,
        },
    ])
}

/// The physical ranges to identity-map as RAM: every region the loader reported except
/// reserved ones and the kernel image, widened to whole pages, merged, minus `exclusions`
/// (page 0, the shared pool).
pub fn identity_ranges(regions: &[MemoryRegion], exclusions: &[PhysRange]) -> Vec<PhysRange> {
    let mut ranges: Vec<PhysRange> = regions
        .iter()
        .filter(|r| {
            matches!(
                MemoryKind::from_raw(r.kind),
                Some(
                    MemoryKind::Usable
                        | MemoryKind::Loader
                        | MemoryKind::AcpiReclaimable
                        | MemoryKind::AcpiNvs
                )
            )
        })
        .filter_map(|r| {
            let start = PhysAddr::new(r.start).align_down(PAGE_SIZE);
            let end = PhysAddr::new(r.start.checked_add(r.length)?).align_up(PAGE_SIZE)?;
            (start < end).then_some(PhysRange { start, end })
        })
        .collect();
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<PhysRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    let kernel_image = regions
        .iter()
        .filter(|r| MemoryKind::from_raw(r.kind) == Some(MemoryKind::KernelImage))
        .filter_map(|r| PhysRange::from_start_len(PhysAddr::new(r.start), r.length))
        .map(|r| PhysRange {
            start: r.start.align_down(PAGE_SIZE),
            end: r.end.align_up(PAGE_SIZE).unwrap_or(r.end),
        });
    let mut result = merged;
    for exclusion in exclusions.iter().copied().chain(kernel_image) {
        result = subtract(&result, exclusion);
    }
    result
}

/// `ranges` with `hole` cut out.
fn subtract(ranges: &[PhysRange], hole: PhysRange) -> Vec<PhysRange> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for range in ranges {
        if !range.overlaps(&hole) {
            out.push(*range);
            continue;
        }
        if range.start < hole.start {
            out.push(PhysRange {
                start: range.start,
                end: hole.start,
            });
        }
        if hole.end < range.end {
            out.push(PhysRange {
                start: hole.end,
                end: range.end,
            });
        }
    }
    out
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

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange {
            start: PhysAddr::new(start),
            end: PhysAddr::new(end),
        }
    }

    #[test]
    fn stacks_have_guards_and_do_not_overlap() {
        for (i, stack) in Stack::ALL.iter().enumerate() {
            assert!(stack.bottom().is_aligned(PAGE_SIZE) && stack.top().is_aligned(PAGE_SIZE));
            assert_eq!(stack.top().as_u64() - stack.bottom().as_u64(), stack.size());
            let guard = VirtAddr::new(stack.bottom().as_u64() - 8);
            assert_eq!(Stack::guarded_by(guard), Some(*stack));
            assert_eq!(Stack::guarded_by(stack.bottom()), None);
            assert_eq!(Stack::containing(stack.bottom()), Some(*stack));
            assert_eq!(Stack::containing(guard), None);
            assert_eq!(
                Stack::guarded_by(VirtAddr::new(stack.top().as_u64() - 1)),
                None
            );
            for other in &Stack::ALL[i + 1..] {
                assert!(stack.top() <= VirtAddr::new(other.bottom().as_u64() - PAGE_SIZE));
            }
        }
        assert!(
            Stack::ALL
                .iter()
                .filter_map(|s| s.ist_index())
                .all(|i| (1..=7).contains(&i))
        );
        assert_eq!(Stack::guarded_by(VirtAddr::new(STACK_REGION - 1)), None);
        assert_eq!(
            Stack::guarded_by(VirtAddr::new(STACK_REGION + 7 * STACK_SLOT_BYTES)),
            None
        );
        assert_eq!(VirtAddr::new(STACK_REGION).table_index(4), 510);
        assert_eq!(VirtAddr::new(SHARED_WINDOW).table_index(4), 509);
    }

    #[test]
    fn per_cpu_stacks_extend_the_boot_cpus_layout() {
        for stack in Stack::ALL {
            assert_eq!(stack.top_on(0), stack.top());
            assert_eq!(stack.bottom_on(0), stack.bottom());
        }
        let mut ranges = Vec::new();
        for cpu in [0, 1, 2, MAX_CPUS - 1] {
            for stack in Stack::ALL {
                let (bottom, top) = (stack.bottom_on(cpu), stack.top_on(cpu));
                assert!(bottom.is_aligned(PAGE_SIZE) && top.is_aligned(PAGE_SIZE));
                assert_eq!(Stack::locate_on_any_cpu(bottom), Some((cpu, stack, true)));
                assert_eq!(
                    Stack::locate_on_any_cpu(VirtAddr::new(top.as_u64() - 1)),
                    Some((cpu, stack, true))
                );
                assert_eq!(
                    Stack::locate_on_any_cpu(VirtAddr::new(bottom.as_u64() - 8)),
                    Some((cpu, stack, false))
                );
                ranges.push((bottom, top));
            }
        }
        ranges.sort();
        assert!(
            ranges
                .windows(2)
                .all(|w| w[0].1.as_u64() + PAGE_SIZE <= w[1].0.as_u64())
        );
        let end = Stack::Virtualization.top_on(MAX_CPUS - 1).as_u64();
        assert!(end < KERNEL_BASE && VirtAddr::new(end - 1).table_index(4) == 510);
        assert_eq!(
            Stack::locate_on_any_cpu(Stack::Kernel.top_on(MAX_CPUS - 1 + 1)),
            None
        );
        assert_eq!(
            Stack::locate_on_any_cpu(VirtAddr::new(STACK_REGION - 1)),
            None
        );
        // Slot 7 of each CPU holds no stack.
        assert_eq!(
            Stack::locate_on_any_cpu(VirtAddr::new(STACK_REGION + 7 * STACK_SLOT_BYTES)),
            None
        );
    }

    #[test]
    fn kernel_segments_are_w_xor_x() {
        let v = |x: u64| VirtAddr::new(KERNEL_BASE + x);
        let segments = kernel_segments(
            (v(0), v(0x5000)),
            (v(0x5000), v(0x7000)),
            (v(0x7000), v(0x9000)),
        )
        .unwrap();
        assert_eq!(
            segments.map(|s| s.access),
            [Access::ReadExecute, Access::ReadOnly, Access::ReadWrite]
        );
        assert_eq!(
            kernel_segments(
                (v(0), v(0x5001)),
                (v(0x6000), v(0x7000)),
                (v(0x7000), v(0x9000))
            ),
            Err(ImageLayoutError::NotPageAligned(v(0x5001)))
        );
        assert_eq!(
            kernel_segments(
                (v(0), v(0x6000)),
                (v(0x5000), v(0x7000)),
                (v(0x7000), v(0x9000))
            ),
            Err(ImageLayoutError::OutOfOrder)
        );
    }

    #[test]
    fn identity_map_skips_reserved_kernel_page_zero_and_pool() {
        let regions = [
            region(0, 0x9fc00, MemoryKind::Usable),
            region(0x9fc00, 0x400, MemoryKind::Reserved),
            region(0xf0000, 0x10000, MemoryKind::Reserved),
            region(0x10_0000, 0x10_0000, MemoryKind::Loader),
            region(0x20_0000, 0x3_0000, MemoryKind::KernelImage),
            region(0x23_0000, 0x7dc_0000, MemoryKind::Usable),
            region(0x7ff_0000, 0x1_0000, MemoryKind::AcpiReclaimable),
            region(0xfeff_c000, 0x4000, MemoryKind::Reserved),
        ];
        let page0 = range(0, 0x1000);
        let pool = range(0x400_0000, 0x440_0000);
        let ranges = identity_ranges(&regions, &[page0, pool]);
        assert_eq!(
            ranges,
            [
                range(0x1000, 0xa0000),
                range(0x10_0000, 0x20_0000),
                range(0x23_0000, 0x400_0000),
                range(0x440_0000, 0x800_0000),
            ]
        );
    }
}
