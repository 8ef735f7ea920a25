//! A minimal reader of QEMU's fw_cfg device over port I/O, for the one file the kernel needs
//! after boot: `etc/acpi/tables` (to find the MADT). The loader has the full DMA reader; the
//! kernel reads a few KiB once, so the byte port is enough and needs no DMA buffer (which on a
//! confidential guest would have to be shared memory). The device is the host's: sizes and
//! counts are bounded.

use super::madt::ByteSource;
use crate::arch::port::{inb, outw};

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIRECTORY: u16 = 0x0019;
/// Most directory entries looked at; QEMU has a few dozen.
const MAX_FILES: u32 = 4096;
const NAME_SIZE: usize = 56;

/// A file in the fw_cfg directory.
#[derive(Clone, Copy, Debug)]
pub struct File {
    /// Its selector key.
    pub selector: u16,
    /// Its size in bytes, as the device claims.
    pub size: u32,
}

/// The data port, positioned by the last selection.
pub struct FwCfg {
    _probed: (),
}

fn select(key: u16) {
    // SAFETY: 0x510 is fw_cfg's selector port on q35; selecting an item has no other effect.
    unsafe { outw(SELECTOR_PORT, key) };
}

impl ByteSource for FwCfg {
    fn read(&mut self, buffer: &mut [u8]) {
        for byte in buffer {
            // SAFETY: 0x511 is fw_cfg's data port; reading advances within the selected item
            // (past its end the device returns zeros).
            *byte = unsafe { inb(DATA_PORT) };
        }
    }
}

impl FwCfg {
    /// The device, if its signature reads "QEMU".
    pub fn probe() -> Option<Self> {
        let mut device = Self { _probed: () };
        select(KEY_SIGNATURE);
        let mut signature = [0u8; 4];
        device.read(&mut signature);
        (&signature == b"QEMU").then_some(device)
    }

    /// Looks `name` up in the directory.
    pub fn find(&mut self, name: &str) -> Option<File> {
        select(KEY_FILE_DIRECTORY);
        let mut count = [0u8; 4];
        self.read(&mut count);
        let count = u32::from_be_bytes(count).min(MAX_FILES);
        for _ in 0..count {
            let mut entry = [0u8; 64];
            self.read(&mut entry);
            let raw = &entry[8..8 + NAME_SIZE];
            let length = raw.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
            if &raw[..length] == name.as_bytes() {
                return Some(File {
                    size: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
                    selector: u16::from_be_bytes([entry[4], entry[5]]),
                });
            }
        }
        None
    }

    /// Selects `file`: the following reads return its bytes from the start.
    pub fn open(&mut self, file: File) {
        select(file.selector);
    }
}
