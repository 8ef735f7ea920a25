//! Control registers and MSRs the kernel reads or sets.

use core::arch::asm;

/// EFER MSR.
pub const IA32_EFER: u32 = 0xc000_0080;
/// EFER.NXE: honour the NX bit.
pub const EFER_NXE: u64 = 1 << 11;
/// CR0.WP: supervisor writes respect read-only pages.
pub const CR0_WP: u64 = 1 << 16;

/// CR0.
pub fn cr0() -> u64 {
    let value;
    // SAFETY: reading CR0 has no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes CR0.
///
/// # Safety
/// The new value must keep paging, protection and the FPU set-up the kernel relies on.
pub unsafe fn set_cr0(value: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// CR2: the address of the last page fault.
pub fn cr2() -> u64 {
    let value;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// CR3: the current page-table root (with flag bits).
pub fn cr3() -> u64 {
    let value;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Loads CR3.
///
/// # Safety
/// `value` must point to page tables that map everything the kernel uses from here on
/// (current code, stack, data) with the same virtual addresses.
pub unsafe fn set_cr3(value: u64) {
    // SAFETY: the caller vouches for the tables.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist (otherwise #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the caller vouches for the MSR.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}
