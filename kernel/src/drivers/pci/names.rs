//! Human-readable names for the devices Ward meets, virtio ones in particular.

use super::config::PciFunction;

/// Red Hat / virtio vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern virtio-blk (device type 2).
pub const VIRTIO_BLK_MODERN: u16 = 0x1042;
/// Modern virtio-vsock (device type 19).
pub const VIRTIO_VSOCK_MODERN: u16 = 0x1053;

/// The virtio device type of a function (`None` if it is not virtio). Modern devices use
/// 0x1040 + type; transitional ones 0x1000..=0x103f with their own table.
pub fn virtio_device_type(function: &PciFunction) -> Option<u16> {
    if function.vendor_id != VIRTIO_VENDOR {
        return None;
    }
    match function.device_id {
        0x1040..=0x107f => Some(function.device_id - 0x1040),
        0x1000 => Some(1),
        0x1001 => Some(2),
        0x1002 => Some(5),
        0x1003 => Some(3),
        0x1004 => Some(8),
        0x1005 => Some(4),
        0x1009 => Some(9),
        0x1012 => Some(19),
        _ => None,
    }
}

/// Whether the function is a modern-only (non-transitional) virtio device.
pub fn is_modern_virtio(function: &PciFunction) -> bool {
    function.vendor_id == VIRTIO_VENDOR && (0x1040..=0x107f).contains(&function.device_id)
}

fn virtio_type_name(device_type: u16) -> &'static str {
    match device_type {
        1 => "virtio-net",
        2 => "virtio-blk",
        3 => "virtio-console",
        4 => "virtio-rng",
        5 => "virtio-balloon",
        8 => "virtio-scsi",
        9 => "virtio-9p",
        16 => "virtio-gpu",
        18 => "virtio-input",
        19 => "virtio-vsock",
        26 => "virtio-fs",
        _ => "virtio (other)",
    }
}

/// A short description: the virtio device name, or the PCI class name.
pub fn describe(function: &PciFunction) -> &'static str {
    if let Some(device_type) = virtio_device_type(function) {
        return virtio_type_name(device_type);
    }
    match (function.class, function.subclass) {
        (0x01, 0x06) => "SATA controller",
        (0x01, _) => "storage controller",
        (0x02, _) => "network controller",
        (0x03, _) => "display controller",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "bridge",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus controller",
        (0x0c, _) => "serial bus controller",
        _ => "other device",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::pci::config::Bdf;

    fn function(vendor_id: u16, device_id: u16, class: u8, subclass: u8) -> PciFunction {
        PciFunction {
            bdf: Bdf::new(0, 1, 0).unwrap(),
            vendor_id,
            device_id,
            class,
            subclass,
            prog_if: 0,
            revision: 1,
            header_layout: 0,
            multi_function: false,
            secondary_bus: None,
        }
    }

    #[test]
    fn names_virtio_devices() {
        let blk = function(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, 1, 0);
        let vsock = function(VIRTIO_VENDOR, VIRTIO_VSOCK_MODERN, 0xff, 0);
        assert_eq!(describe(&blk), "virtio-blk");
        assert_eq!(describe(&vsock), "virtio-vsock");
        assert!(is_modern_virtio(&blk) && is_modern_virtio(&vsock));
        let legacy_blk = function(VIRTIO_VENDOR, 0x1001, 1, 0);
        assert_eq!(describe(&legacy_blk), "virtio-blk");
        assert!(!is_modern_virtio(&legacy_blk));
        assert_eq!(virtio_device_type(&function(0x8086, 0x1042, 1, 0)), None);
    }

    #[test]
    fn names_q35_chipset_devices_by_class() {
        assert_eq!(describe(&function(0x8086, 0x29c0, 6, 0)), "host bridge");
        assert_eq!(describe(&function(0x8086, 0x2918, 6, 1)), "ISA bridge");
        assert_eq!(describe(&function(0x8086, 0x2922, 1, 6)), "SATA controller");
        assert_eq!(
            describe(&function(0x8086, 0x2930, 0xc, 5)),
            "SMBus controller"
        );
    }
}
