//! Typed physical and virtual addresses, so the two can never be mixed up silently.

use core::fmt;

/// Size of a base page.
pub const PAGE_SIZE: u64 = 4096;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

/// A virtual address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

macro_rules! address_ops {
    ($type:ident) => {
        impl $type {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Rounds up to a multiple of `align` (a power of two); `None` on overflow.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(raw) => Some(Self(raw & !(align - 1))),
                    None => None,
                }
            }

            /// `self + bytes`, `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(raw) => Some(Self(raw)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($type), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_ops!(PhysAddr);
address_ops!(VirtAddr);

impl VirtAddr {
    /// The index into the page table at `level` (4 = PML4 … 1 = page table).
    pub const fn table_index(self, level: u8) -> usize {
        ((self.0 >> (12 + 9 * (level as u64 - 1))) & 0x1ff) as usize
    }

    /// Whether bits 63..47 are all equal (4-level paging).
    pub const fn is_canonical(self) -> bool {
        let top = self.0 >> 47;
        top == 0 || top == 0x1_ffff
    }

    /// A raw pointer to this address.
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }
}

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl PhysRange {
    /// `[start, start + length)`, `None` if it wraps.
    pub const fn from_start_len(start: PhysAddr, length: u64) -> Option<Self> {
        match start.checked_add(length) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.as_u64().saturating_sub(self.start.as_u64())
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of whole 4 KiB pages.
    pub const fn pages(&self) -> u64 {
        self.len() / PAGE_SIZE
    }

    /// Whether `address` is inside.
    pub const fn contains(&self, address: PhysAddr) -> bool {
        self.start.as_u64() <= address.as_u64() && address.as_u64() < self.end.as_u64()
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start.as_u64() < other.end.as_u64() && other.start.as_u64() < self.end.as_u64()
    }

    /// The largest page-aligned range inside this one (may be empty).
    pub fn shrink_to_pages(&self) -> PhysRange {
        let start = self.start.align_up(PAGE_SIZE).unwrap_or(self.end);
        let end = self.end.align_down(PAGE_SIZE);
        if start >= end {
            PhysRange { start, end: start }
        } else {
            PhysRange { start, end }
        }
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#012x}..{:#012x})",
            self.start.as_u64(),
            self.end.as_u64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_overflow() {
        let a = PhysAddr::new(0x1234);
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x1000));
        assert_eq!(a.align_up(PAGE_SIZE), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(u64::MAX).align_up(PAGE_SIZE), None);
        assert!(PhysAddr::new(0x20_0000).is_aligned(0x20_0000));
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn table_indices_and_canonical_form() {
        let v = VirtAddr::new(0xFFFF_FFFF_8020_3000);
        assert_eq!(v.table_index(4), 511);
        assert_eq!(v.table_index(3), 510);
        assert_eq!(v.table_index(2), 1);
        assert_eq!(v.table_index(1), 3);
        assert!(v.is_canonical());
        assert!(!VirtAddr::new(0x0000_8000_0000_0000).is_canonical());
        assert!(VirtAddr::new(0x0000_7fff_ffff_f000).is_canonical());
    }

    #[test]
    fn ranges() {
        let r = PhysRange::from_start_len(PhysAddr::new(0x1800), 0x3000).unwrap();
        assert_eq!(
            r.shrink_to_pages(),
            PhysRange {
                start: PhysAddr::new(0x2000),
                end: PhysAddr::new(0x4000)
            }
        );
        assert_eq!(r.shrink_to_pages().pages(), 2);
        let tiny = PhysRange::from_start_len(PhysAddr::new(0x1800), 0x100).unwrap();
        assert!(tiny.shrink_to_pages().is_empty());
        assert!(r.contains(PhysAddr::new(0x1800)) && !r.contains(PhysAddr::new(0x4800)));
        let other = PhysRange::from_start_len(PhysAddr::new(0x4000), 0x1000).unwrap();
        assert!(r.overlaps(&other));
        assert!(!other.overlaps(&PhysRange::from_start_len(PhysAddr::new(0x5000), 1).unwrap()));
        assert!(PhysRange::from_start_len(PhysAddr::new(u64::MAX), 2).is_none());
    }
}
