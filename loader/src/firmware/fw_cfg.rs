//! QEMU's firmware configuration device: signature check, file directory, and reads through the
//! DMA interface (port I/O reads cost one VM exit per byte; they are used only in a TD).
//!
//! The device is the host's and untrusted: directory entries, sizes and DMA status are checked,
//! and waiting for a transfer is bounded.

use super::cpu::{inb, outl, outw};
use core::fmt;
use core::sync::atomic::{Ordering, compiler_fence};

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const DMA_ADDRESS_HIGH_PORT: u16 = 0x514;
const DMA_ADDRESS_LOW_PORT: u16 = 0x518;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FEATURES: u16 = 0x0001;
const KEY_FILE_DIRECTORY: u16 = 0x0019;
const FEATURE_DMA: u32 = 1 << 1;
const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SELECT: u32 = 1 << 3;
/// Most directory entries looked at; QEMU has a few dozen.
const MAX_FILES: u32 = 4096;
const NAME_SIZE: usize = 56;
const DIRECTORY_ENTRY_SIZE: usize = 64;
/// Polls of the DMA status before giving up on the device.
const DMA_POLL_LIMIT: u32 = 100_000_000;

/// Why talking to fw_cfg failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwCfgError {
    /// The signature is not "QEMU": no fw_cfg device.
    NoDevice,
    /// The device lacks the DMA interface.
    NoDma,
    /// The directory claims more files than we look at.
    TooManyFiles(u32),
    /// The device reported a DMA error.
    DmaError,
    /// The device never completed a DMA transfer.
    DmaTimeout,
    /// A file is larger than the buffer meant for it.
    TooLarge { size: u32, limit: usize },
}

impl fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => write!(f, "no QEMU fw_cfg device (signature mismatch)"),
            Self::NoDma => write!(f, "fw_cfg has no DMA interface (revision bit 1 clear)"),
            Self::TooManyFiles(n) => {
                write!(f, "fw_cfg directory claims {n} files (max {MAX_FILES})")
            }
            Self::DmaError => write!(f, "fw_cfg DMA transfer failed"),
            Self::DmaTimeout => write!(f, "fw_cfg DMA transfer never completed"),
            Self::TooLarge { size, limit } => {
                write!(
                    f,
                    "fw_cfg file of {size} bytes exceeds the {limit}-byte limit"
                )
            }
        }
    }
}

/// A file in the fw_cfg directory.
#[derive(Clone, Copy, Debug)]
pub struct File {
    /// Its selector key.
    pub selector: u16,
    /// Its size in bytes, as the device claims.
    pub size: u32,
}

/// The DMA descriptor the device reads (all fields big-endian).
#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

/// A probed fw_cfg device.
pub struct FwCfg {
    /// Transfers go through the DMA interface; otherwise through the data port, one byte per
    /// access (in a TD the device cannot reach private memory, and each port access is a #VE).
    dma: bool,
}

impl FwCfg {
    /// Checks the signature, and the DMA feature bit when `use_dma`.
    pub fn probe(use_dma: bool) -> Result<Self, FwCfgError> {
        let mut signature = [0u8; 4];
        read_port_bytes(KEY_SIGNATURE, &mut signature);
        if &signature != b"QEMU" {
            return Err(FwCfgError::NoDevice);
        }
        if use_dma {
            let mut features = [0u8; 4];
            read_port_bytes(KEY_FEATURES, &mut features);
            if u32::from_le_bytes(features) & FEATURE_DMA == 0 {
                return Err(FwCfgError::NoDma);
            }
        }
        Ok(Self { dma: use_dma })
    }

    /// One transfer into `buffer`: `control` as for DMA (select bit and key, read bit).
    fn transfer(&mut self, control: u32, buffer: &mut [u8]) -> Result<(), FwCfgError> {
        if self.dma {
            return self.dma(control, buffer);
        }
        // SAFETY: fw_cfg's selector and data ports; selecting and reading have no other effect.
        unsafe {
            if control & DMA_SELECT != 0 {
                outw(SELECTOR_PORT, (control >> 16) as u16);
            }
            for byte in buffer {
                *byte = inb(DATA_PORT);
            }
        }
        Ok(())
    }

    /// Looks `name` up in the directory.
    pub fn find(&mut self, name: &str) -> Result<Option<File>, FwCfgError> {
        let mut count = [0u8; 4];
        self.transfer(
            DMA_SELECT | DMA_READ | (u32::from(KEY_FILE_DIRECTORY) << 16),
            &mut count,
        )?;
        let count = u32::from_be_bytes(count);
        if count > MAX_FILES {
            return Err(FwCfgError::TooManyFiles(count));
        }
        let mut found = None;
        // Read every entry, even after a match, so the next reader starts from a clean state.
        for _ in 0..count {
            let mut entry = [0u8; DIRECTORY_ENTRY_SIZE];
            self.transfer(DMA_READ, &mut entry)?;
            let raw_name = &entry[8..8 + NAME_SIZE];
            let length = raw_name.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
            if found.is_none() && &raw_name[..length] == name.as_bytes() {
                found = Some(File {
                    size: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
                    selector: u16::from_be_bytes([entry[4], entry[5]]),
                });
            }
        }
        Ok(found)
    }

    /// Reads `file` into the start of `buffer`; returns the bytes read.
    pub fn read<'b>(&mut self, file: File, buffer: &'b mut [u8]) -> Result<&'b [u8], FwCfgError> {
        let size = file.size as usize;
        if size > buffer.len() {
            return Err(FwCfgError::TooLarge {
                size: file.size,
                limit: buffer.len(),
            });
        }
        let buffer = &mut buffer[..size];
        self.transfer(
            DMA_SELECT | DMA_READ | (u32::from(file.selector) << 16),
            buffer,
        )?;
        Ok(buffer)
    }

    /// Runs one DMA transfer into `buffer` and waits for it.
    fn dma(&mut self, control: u32, buffer: &mut [u8]) -> Result<(), FwCfgError> {
        let access = DmaAccess {
            control: control.to_be(),
            length: (buffer.len() as u32).to_be(),
            address: (buffer.as_mut_ptr() as u64).to_be(),
        };
        let address = &access as *const DmaAccess as u64;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the fw_cfg DMA address registers; the descriptor and buffer are identity-mapped
        // RAM that outlives the transfer, which completes (or is abandoned) before we return.
        unsafe {
            outl(DMA_ADDRESS_HIGH_PORT, ((address >> 32) as u32).to_be());
            outl(DMA_ADDRESS_LOW_PORT, (address as u32).to_be());
        }
        for _ in 0..DMA_POLL_LIMIT {
            // SAFETY: `access` is live; the device writes `control` behind the compiler's back.
            let status = u32::from_be(unsafe { core::ptr::read_volatile(&access.control) });
            if status & DMA_ERROR != 0 {
                return Err(FwCfgError::DmaError);
            }
            if status == 0 {
                compiler_fence(Ordering::SeqCst);
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(FwCfgError::DmaTimeout)
    }
}

/// Reads a few bytes of `key` through the data port (only for the probe, before DMA is known).
fn read_port_bytes(key: u16, out: &mut [u8]) {
    // SAFETY: fw_cfg's selector and data ports; selecting and reading have no other effect.
    unsafe {
        outw(SELECTOR_PORT, key);
        for byte in out {
            *byte = inb(DATA_PORT);
        }
    }
}
