//! Configuration access on q35 through ECAM (memory-mapped, 4 KiB per function).
//!
//! Without firmware of its own beyond Ward's loader, nobody may have enabled the MCH's
//! PCIEXBAR window yet: the kernel enables it at the q35 default (0xB000_0000, 256 buses) using
//! the legacy 0xCF8/0xCFC mechanism on the host bridge, after checking that the host bridge
//! really is the q35 MCH. The window is identity-mapped uncached by the kernel's page tables.

use super::config::{Bdf, ConfigSpace};
use crate::arch::port::{inl, outl};
use crate::mm::address::PhysAddr;
use core::fmt;

/// Where q35 firmware conventionally puts ECAM.
pub const Q35_ECAM_BASE: u64 = 0xb000_0000;
/// 256 buses × 1 MiB.
pub const Q35_ECAM_SIZE: u64 = 256 << 20;
const Q35_MCH_ID: u32 = 0x29c0_8086;
const PCIEXBAR: u8 = 0x60;
const PCIEXBAR_ENABLE: u32 = 1;
const PCIEXBAR_LENGTH_MASK: u32 = 0b110;

/// Why ECAM could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcamError {
    /// Device 00:00.0 is not the q35 MCH (vendor/device as read).
    NotQ35(u32),
    /// PCIEXBAR is enabled at a base or size the kernel does not map.
    UnexpectedWindow(u64),
}

impl fmt::Display for EcamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotQ35(id) => write!(
                f,
                "host bridge {:04x}:{:04x} is not the q35 MCH",
                id & 0xffff,
                id >> 16
            ),
            Self::UnexpectedWindow(raw) => write!(
                f,
                "PCIEXBAR {raw:#x} is not the 256-bus window at {Q35_ECAM_BASE:#x}"
            ),
        }
    }
}

fn legacy_address(bdf: Bdf, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(bdf.bus) << 16)
        | (u32::from(bdf.device) << 11)
        | (u32::from(bdf.function) << 8)
        | u32::from(offset & 0xfc)
}

fn legacy_read(bdf: Bdf, offset: u8) -> u32 {
    // SAFETY: 0xCF8/0xCFC are the PCI configuration mechanism #1 ports; only this module uses
    // them, once, at boot on one CPU.
    unsafe {
        outl(0xcf8, legacy_address(bdf, offset));
        inl(0xcfc)
    }
}

fn legacy_write(bdf: Bdf, offset: u8, value: u32) {
    // SAFETY: as in `legacy_read`; the only register written is the MCH's PCIEXBAR.
    unsafe {
        outl(0xcf8, legacy_address(bdf, offset));
        outl(0xcfc, value);
    }
}

/// Whether the kernel enabled the window or found it enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcamState {
    /// Found enabled at the default base.
    AlreadyEnabled,
    /// Enabled now by the kernel.
    EnabledByKernel,
}

/// Makes sure the q35 ECAM window is on at [`Q35_ECAM_BASE`].
pub fn enable_q35() -> Result<EcamState, EcamError> {
    let host_bridge = Bdf {
        bus: 0,
        device: 0,
        function: 0,
    };
    let id = legacy_read(host_bridge, 0);
    if id != Q35_MCH_ID {
        return Err(EcamError::NotQ35(id));
    }
    let low = legacy_read(host_bridge, PCIEXBAR);
    let high = legacy_read(host_bridge, PCIEXBAR + 4);
    let raw = (u64::from(high) << 32) | u64::from(low);
    if low & PCIEXBAR_ENABLE != 0 {
        let base = raw & 0xf_f000_0000;
        if base != Q35_ECAM_BASE || low & PCIEXBAR_LENGTH_MASK != 0 {
            return Err(EcamError::UnexpectedWindow(raw));
        }
        return Ok(EcamState::AlreadyEnabled);
    }
    legacy_write(host_bridge, PCIEXBAR + 4, 0);
    legacy_write(
        host_bridge,
        PCIEXBAR,
        Q35_ECAM_BASE as u32 | PCIEXBAR_ENABLE,
    );
    Ok(EcamState::EnabledByKernel)
}

/// ECAM configuration access through the identity-mapped window.
pub struct Ecam {
    base: PhysAddr,
}

impl Ecam {
    /// The q35 window (enable it first with [`enable_q35`]).
    pub fn q35() -> Self {
        Self {
            base: PhysAddr::new(Q35_ECAM_BASE),
        }
    }
}

impl ConfigSpace for Ecam {
    fn read_u32(&self, bdf: Bdf, offset: u16) -> u32 {
        if offset >= 4096 || !offset.is_multiple_of(4) {
            return u32::MAX;
        }
        let address = self.base.as_u64() + bdf.ecam_offset() + u64::from(offset);
        // SAFETY: the whole 256 MiB window is identity-mapped uncached, `bdf` and `offset` keep
        // the address inside it, and configuration reads have no side effects.
        unsafe { <u32 as crate::arch::mmio::Register>::load(address as *const u32) }
    }
}
