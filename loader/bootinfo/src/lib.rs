//! The ABI between Ward's loader (stage0 firmware) and its kernel.
//!
//! The loader fills one [`BootInfo`] in private memory and passes its address to the kernel entry
//! point in `rdi`. Everything here is `#[repr(C)]` with explicit padding so that both sides, built
//! separately, agree byte for byte; the layout test below pins the offsets. A change to the layout
//! bumps [`BOOT_INFO_VERSION`]; the kernel refuses any version it was not built for.
#![cfg_attr(not(test), no_std)]

/// `"WARDBOOT"` read as a little-endian `u64`.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"WARDBOOT");
/// Layout version of [`BootInfo`].
pub const BOOT_INFO_VERSION: u32 = 1;
/// Capacity of [`MemoryMap::entries`].
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Capacity of [`MeasurementLog::entries`].
pub const MAX_MEASUREMENTS: usize = 16;

/// The confidential-computing platform the loader detected.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformKind {
    /// A plain VM (KVM or TCG): no memory encryption, simulated evidence only.
    Native = 0,
    /// AMD SEV-SNP.
    Snp = 1,
    /// Intel TDX.
    Tdx = 2,
}

impl PlatformKind {
    /// Decodes the raw value, rejecting unknown platforms.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Native),
            1 => Some(Self::Snp),
            2 => Some(Self::Tdx),
            _ => None,
        }
    }
}

/// What a physical memory region holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM the kernel may allocate.
    Usable = 1,
    /// Firmware-reserved or device memory: never touch.
    Reserved = 2,
    /// ACPI tables (reclaimable after they are read).
    AcpiReclaimable = 3,
    /// ACPI non-volatile storage.
    AcpiNvs = 4,
    /// RAM holding the kernel's loaded segments.
    KernelImage = 5,
    /// RAM the loader used for page tables, the boot stack, this structure and the configuration;
    /// the kernel may reclaim it once it no longer needs anything passed here.
    Loader = 6,
}

impl MemoryKind {
    /// Decodes the raw value; unknown kinds are treated by callers as reserved.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Usable),
            2 => Some(Self::Reserved),
            3 => Some(Self::AcpiReclaimable),
            4 => Some(Self::AcpiNvs),
            5 => Some(Self::KernelImage),
            6 => Some(Self::Loader),
            _ => None,
        }
    }
}

/// One physical memory range, `[start, start + length)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemoryRegion {
    /// Physical start address (4 KiB aligned for usable RAM).
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// A [`MemoryKind`] as `u32`.
    pub kind: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
}

/// The physical memory map, sorted by start address, non-overlapping.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemoryMap {
    /// Number of valid entries in `entries`.
    pub count: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
    /// The regions; only the first `count` are meaningful.
    pub entries: [MemoryRegion; MAX_MEMORY_REGIONS],
}

impl MemoryMap {
    /// An empty map.
    pub const fn empty() -> Self {
        Self {
            count: 0,
            reserved: 0,
            entries: [MemoryRegion {
                start: 0,
                length: 0,
                kind: 0,
                reserved: 0,
            }; MAX_MEMORY_REGIONS],
        }
    }

    /// The valid entries (an out-of-range `count` is clamped, never trusted).
    pub fn regions(&self) -> &[MemoryRegion] {
        let count = (self.count as usize).min(MAX_MEMORY_REGIONS);
        &self.entries[..count]
    }
}

/// What a measurement log entry measured.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasurementKind {
    /// SHA-384 of the whole firmware image as mapped below 4 GiB.
    FirmwareImage = 1,
    /// SHA-384 of the kernel ELF packed inside the image.
    KernelElf = 2,
    /// SHA-384 of the deployment configuration read from fw_cfg `opt/ward/config`.
    DeploymentConfig = 3,
}

impl MeasurementKind {
    /// Decodes the raw value.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::FirmwareImage),
            2 => Some(Self::KernelElf),
            3 => Some(Self::DeploymentConfig),
            _ => None,
        }
    }
}

/// One SHA-384 measurement.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// A [`MeasurementKind`] as `u32`.
    pub kind: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
    /// The SHA-384 digest.
    pub sha384: [u8; 48],
}

/// The loader's measurement log, in the order the measurements were taken.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MeasurementLog {
    /// Number of valid entries.
    pub count: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
    /// The entries; only the first `count` are meaningful.
    pub entries: [Measurement; MAX_MEASUREMENTS],
}

impl MeasurementLog {
    /// An empty log.
    pub const fn empty() -> Self {
        Self {
            count: 0,
            reserved: 0,
            entries: [Measurement {
                kind: 0,
                reserved: 0,
                sha384: [0; 48],
            }; MAX_MEASUREMENTS],
        }
    }

    /// The valid entries (an out-of-range `count` is clamped).
    pub fn measurements(&self) -> &[Measurement] {
        let count = (self.count as usize).min(MAX_MEASUREMENTS);
        &self.entries[..count]
    }

    /// The first entry of `kind`, if any.
    pub fn find(&self, kind: MeasurementKind) -> Option<&Measurement> {
        self.measurements().iter().find(|m| m.kind == kind as u32)
    }

    /// Appends an entry; returns `false` when the log is full.
    pub fn push(&mut self, kind: MeasurementKind, sha384: [u8; 48]) -> bool {
        let index = self.count as usize;
        if index >= MAX_MEASUREMENTS {
            return false;
        }
        self.entries[index] = Measurement {
            kind: kind as u32,
            reserved: 0,
            sha384,
        };
        self.count += 1;
        true
    }
}

/// Where the deployment configuration was copied and its digests.
///
/// The configuration is untrusted until it is bound to the evidence (DESIGN §4): SHA-256 is what
/// SNP `HOST_DATA` must equal, SHA-384 what TDX `MRCONFIGID` must equal.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConfigBlob {
    /// Physical address of a private copy of the configuration bytes (0 when absent).
    pub address: u64,
    /// Length in bytes (0 when absent).
    pub length: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// SHA-384 of the bytes.
    pub sha384: [u8; 48],
}

/// Where the kernel was placed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelPlacement {
    /// Lowest physical address of the kernel's segments.
    pub physical_start: u64,
    /// One past the highest physical address of the kernel's segments.
    pub physical_end: u64,
    /// Virtual address of the entry point.
    pub entry: u64,
}

/// Platform-specific values that the kernel needs and only the loader can learn.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PlatformInfo {
    /// SNP: the C-bit mask (`1 << cbit`); TDX: the shared-bit mask (`1 << (gpaw - 1)`); native: 0.
    pub encryption_mask: u64,
    /// SNP: physical address of the secrets page (0 elsewhere).
    pub secrets_page: u64,
    /// SNP: physical address of the validated CPUID page (0 elsewhere).
    pub cpuid_page: u64,
    /// Reserved for future platform values; zero.
    pub reserved: [u64; 5],
}

/// The hand-over structure. Its address is passed to the kernel entry point in `rdi`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BOOT_INFO_VERSION`].
    pub version: u32,
    /// `size_of::<BootInfo>()` as the loader saw it.
    pub size: u32,
    /// A [`PlatformKind`] as `u32`.
    pub platform: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
    /// Platform-specific values.
    pub platform_info: PlatformInfo,
    /// Where the kernel is.
    pub kernel: KernelPlacement,
    /// The deployment configuration.
    pub config: ConfigBlob,
    /// The loader's measurements.
    pub measurements: MeasurementLog,
    /// Physical memory.
    pub memory_map: MemoryMap,
}

impl BootInfo {
    /// A structure with the header filled in and everything else empty.
    pub const fn new(platform: PlatformKind) -> Self {
        Self {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            size: core::mem::size_of::<BootInfo>() as u32,
            platform: platform as u32,
            reserved: 0,
            platform_info: PlatformInfo {
                encryption_mask: 0,
                secrets_page: 0,
                cpuid_page: 0,
                reserved: [0; 5],
            },
            kernel: KernelPlacement {
                physical_start: 0,
                physical_end: 0,
                entry: 0,
            },
            config: ConfigBlob {
                address: 0,
                length: 0,
                sha256: [0; 32],
                sha384: [0; 48],
            },
            measurements: MeasurementLog::empty(),
            memory_map: MemoryMap::empty(),
        }
    }

    /// Checks the header the kernel relies on before it reads anything else.
    pub fn validate_header(&self) -> Result<PlatformKind, BootInfoError> {
        if self.magic != BOOT_INFO_MAGIC {
            return Err(BootInfoError::BadMagic(self.magic));
        }
        if self.version != BOOT_INFO_VERSION {
            return Err(BootInfoError::UnsupportedVersion(self.version));
        }
        if self.size as usize != core::mem::size_of::<BootInfo>() {
            return Err(BootInfoError::SizeMismatch(self.size));
        }
        PlatformKind::from_raw(self.platform).ok_or(BootInfoError::UnknownPlatform(self.platform))
    }
}

/// Why a [`BootInfo`] header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The magic number is wrong: not a Ward loader, or a corrupted pointer.
    BadMagic(u64),
    /// The loader speaks a layout version this kernel was not built for.
    UnsupportedVersion(u32),
    /// The loader's structure size differs from ours.
    SizeMismatch(u32),
    /// The platform value is not one we know.
    UnknownPlatform(u32),
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "boot info magic {m:#018x} is not WARDBOOT"),
            Self::UnsupportedVersion(v) => {
                write!(
                    f,
                    "boot info version {v}, kernel supports {BOOT_INFO_VERSION}"
                )
            }
            Self::SizeMismatch(s) => write!(
                f,
                "boot info size {s}, kernel expects {}",
                core::mem::size_of::<BootInfo>()
            ),
            Self::UnknownPlatform(p) => write!(f, "unknown platform kind {p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<MemoryRegion>(), 24);
        assert_eq!(size_of::<Measurement>(), 56);
        assert_eq!(size_of::<PlatformInfo>(), 64);
        assert_eq!(size_of::<KernelPlacement>(), 24);
        assert_eq!(size_of::<ConfigBlob>(), 96);
        assert_eq!(offset_of!(BootInfo, magic), 0);
        assert_eq!(offset_of!(BootInfo, version), 8);
        assert_eq!(offset_of!(BootInfo, size), 12);
        assert_eq!(offset_of!(BootInfo, platform), 16);
        assert_eq!(offset_of!(BootInfo, platform_info), 24);
        assert_eq!(offset_of!(BootInfo, kernel), 88);
        assert_eq!(offset_of!(BootInfo, config), 112);
        assert_eq!(offset_of!(BootInfo, measurements), 208);
        assert_eq!(
            offset_of!(BootInfo, memory_map),
            208 + 8 + 56 * MAX_MEASUREMENTS
        );
        assert_eq!(
            size_of::<BootInfo>(),
            208 + 8 + 56 * MAX_MEASUREMENTS + 8 + 24 * MAX_MEMORY_REGIONS
        );
    }

    #[test]
    fn header_validation_refuses_foreign_structures() {
        let good = BootInfo::new(PlatformKind::Native);
        assert_eq!(good.validate_header(), Ok(PlatformKind::Native));
        let mut bad = good;
        bad.magic = 0;
        assert_eq!(bad.validate_header(), Err(BootInfoError::BadMagic(0)));
        let mut bad = good;
        bad.version = 2;
        assert_eq!(
            bad.validate_header(),
            Err(BootInfoError::UnsupportedVersion(2))
        );
        let mut bad = good;
        bad.size -= 1;
        assert!(matches!(
            bad.validate_header(),
            Err(BootInfoError::SizeMismatch(_))
        ));
        let mut bad = good;
        bad.platform = 7;
        assert_eq!(
            bad.validate_header(),
            Err(BootInfoError::UnknownPlatform(7))
        );
    }

    #[test]
    fn counts_from_memory_are_clamped() {
        let mut map = MemoryMap::empty();
        map.count = u32::MAX;
        assert_eq!(map.regions().len(), MAX_MEMORY_REGIONS);
        let mut log = MeasurementLog::empty();
        for _ in 0..MAX_MEASUREMENTS {
            assert!(log.push(MeasurementKind::KernelElf, [1; 48]));
        }
        assert!(!log.push(MeasurementKind::KernelElf, [1; 48]));
        assert!(log.find(MeasurementKind::KernelElf).is_some());
        assert!(log.find(MeasurementKind::FirmwareImage).is_none());
    }
}
