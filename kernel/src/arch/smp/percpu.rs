//! Which CPU is this: each CPU's `IA32_GS_BASE` points to a small record holding its index
//! (0 = boot CPU, then application processors in start order).

use crate::arch::registers::{rdmsr, wrmsr};
use alloc::boxed::Box;

const IA32_GS_BASE: u32 = 0xc000_0101;

#[repr(C)]
struct PerCpu {
    index: usize,
}

/// Records `index` as the current CPU's. Called once per CPU, after its GDT is loaded (loading
/// a null GS selector may clear the base).
pub fn set_current(index: usize) {
    let record = Box::leak(Box::new(PerCpu { index }));
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU; the kernel does not use GS otherwise.
    unsafe { wrmsr(IA32_GS_BASE, core::ptr::from_mut(record) as u64) };
}

/// The current CPU's index, `None` before [`set_current`] ran on it.
pub fn current() -> Option<usize> {
    // SAFETY: reading IA32_GS_BASE has no side effect.
    let base = unsafe { rdmsr(IA32_GS_BASE) };
    if base == 0 {
        return None;
    }
    // SAFETY: a non-zero GS base was set by `set_current` to a leaked, immutable record.
    Some(unsafe { (*(base as *const PerCpu)).index })
}
