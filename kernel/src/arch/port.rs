//! x86 port I/O.

use core::arch::asm;

/// Reads a byte from `port`.
///
/// # Safety
/// Reading the port must have no side effect the caller has not accounted for.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; IN touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a byte to `port`.
///
/// # Safety
/// The write must be valid for the device behind `port`.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; OUT touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Writes a word to `port`.
///
/// # Safety
/// The write must be valid for the device behind `port`.
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller vouches for the port; OUT touches no memory.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a doubleword from `port`.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the port; IN touches no memory.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a doubleword to `port`.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port; OUT touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}
