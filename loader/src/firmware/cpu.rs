//! The few privileged instructions the loader needs, each in its own small wrapper.
//!
//! Under SEV-SNP a port access would raise #VC: once the GHCB is set up, the port wrappers
//! carry the access to the host as a GHCB IOIO exit instead (`snp.rs` says why not a #VC
//! handler).

use super::snp;
use core::arch::asm;
use ward_attestation::guest::snp::ghcb::PortDirection;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device whose side effects the caller wants.
pub unsafe fn outb(port: u16, value: u8) {
    if snp::port_route() != snp::PortRoute::Direct {
        snp::port_io(port, 1, PortDirection::Out, value.into());
        return;
    }
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 16-bit value to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    if snp::port_route() != snp::PortRoute::Direct {
        snp::port_io(port, 2, PortDirection::Out, value.into());
        return;
    }
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    if snp::port_route() != snp::PortRoute::Direct {
        snp::port_io(port, 4, PortDirection::Out, value);
        return;
    }
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn inb(port: u16) -> u8 {
    if snp::port_route() != snp::PortRoute::Direct {
        return snp::port_io(port, 1, PortDirection::In, 0) as u8;
    }
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Loads CR3.
///
/// # Safety
/// `pml4` must be the root of page tables that map the running code, its stack and its data the
/// same way the current tables do.
pub unsafe fn write_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables keep everything in use mapped.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// Reloads CR3 with its own value: flushes the non-global TLB entries after a page-table edit.
///
/// # Safety
/// The tables CR3 points at must map everything in use.
pub unsafe fn reload_cr3() {
    // SAFETY: the same root is loaded again; the caller vouches for the tables' contents.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) }
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist and be readable (RDMSR of anything else raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the caller vouches for the MSR; RDMSR touches no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist, and writing `value` must have only the effect the caller wants.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value; WRMSR touches no memory.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags))
    }
}

/// The XCR0 the boot assembly enabled.
pub fn xcr0() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: CR4.OSXSAVE was set by the boot assembly, so `xgetbv` with ecx = 0 is defined.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Whether the CPU supports 1 GiB pages (CPUID.80000001:EDX bit 26).
pub fn has_huge_pages() -> bool {
    let leaf = core::arch::x86_64::__cpuid_count(0x8000_0001, 0);
    leaf.edx & (1 << 26) != 0
}

/// Whether AVX-512F state was enabled by the boot assembly (XCR0 bits 5..7).
pub fn avx512_state_enabled() -> bool {
    xcr0() & 0xE0 == 0xE0
}

/// Stops the CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` only stops this CPU; nothing is left to run.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
