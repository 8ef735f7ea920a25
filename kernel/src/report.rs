//! Formatting for the boot report: sizes and memory-region kinds.

use core::fmt;
use ward_bootinfo::MemoryKind;

/// A byte count printed with a binary unit (`512 KiB`, `1.5 MiB`, `2.0 GiB`).
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, scale) in UNITS {
            if self.0 >= scale {
                let tenths = self.0 * 10 / scale;
                return if self.0.is_multiple_of(scale) {
                    write!(f, "{} {unit}", self.0 / scale)
                } else {
                    write!(f, "{}.{} {unit}", tenths / 10, tenths % 10)
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// Name of a memory-map kind as the loader encoded it.
pub fn kind_name(raw: u32) -> &'static str {
    match MemoryKind::from_raw(raw) {
        Some(MemoryKind::Usable) => "usable",
        Some(MemoryKind::Reserved) => "reserved",
        Some(MemoryKind::AcpiReclaimable) => "ACPI reclaimable",
        Some(MemoryKind::AcpiNvs) => "ACPI NVS",
        Some(MemoryKind::KernelImage) => "kernel image",
        Some(MemoryKind::Loader) => "loader",
        None => "unknown (treated as reserved)",
    }
}

/// Lowercase hex of `bytes`.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(Size(512).to_string(), "512 B");
        assert_eq!(Size(512 << 10).to_string(), "512 KiB");
        assert_eq!(Size(3 << 19).to_string(), "1.5 MiB");
        assert_eq!(Size(2 << 30).to_string(), "2 GiB");
        assert_eq!(Size(0x9fc00).to_string(), "639 KiB");
        assert_eq!(Size(0x9fd00).to_string(), "639.2 KiB");
        assert_eq!(kind_name(1), "usable");
        assert_eq!(kind_name(5), "kernel image");
        assert_eq!(kind_name(77), "unknown (treated as reserved)");
        assert_eq!(Hex(&[0x0a, 0xff]).to_string(), "0aff");
    }
}
