//! The interrupt descriptor table: the 32 CPU exceptions, each on an IST stack. Vectors 32-255
//! stay not-present: interrupts are off, and a stray one becomes a reported #GP.

use super::exceptions::stub_addresses;
use super::gdt::KERNEL_CODE;
use super::paging::layout::Stack;
use alloc::boxed::Box;
use core::arch::asm;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    /// A present, DPL-0 64-bit interrupt gate (IF cleared on entry).
    fn interrupt(handler: u64, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector: KERNEL_CODE,
            ist,
            type_attributes: 0x8e,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, packed(2))]
struct Idtr {
    limit: u16,
    base: u64,
}

/// The IST stack for an exception vector.
pub fn stack_for(vector: u8) -> Stack {
    match vector {
        2 => Stack::Nmi,
        8 => Stack::DoubleFault,
        14 => Stack::PageFault,
        18 => Stack::MachineCheck,
        20 | 29 => Stack::Virtualization,
        _ => Stack::Exception,
    }
}

/// Builds and loads the IDT. Needs the GDT (for the code selector and the IST stacks).
pub fn init() {
    init_with(&[]);
}

/// [`init`] plus interrupt gates for `extra` (vector ≥ 32, handler address), which run on the
/// interrupted code's stack: the application processors' wake-up and spurious vectors.
pub fn init_with(extra: &[(u8, u64)]) {
    let mut gates = [Gate::default(); 256];
    for (vector, handler) in stub_addresses().iter().enumerate() {
        let ist = stack_for(vector as u8).ist_index().unwrap_or(0);
        gates[vector] = Gate::interrupt(*handler, ist);
    }
    // In a TD, #VE is emulated and returns instead of being reported.
    if let Some(handler) = crate::platform::tdx::ve_entry_address() {
        gates[20] = Gate::interrupt(handler, stack_for(20).ist_index().unwrap_or(0));
    }
    // Under SEV-SNP, #VC is emulated and returns instead of being reported.
    if let Some(handler) = crate::platform::snp::vc_entry_address() {
        gates[29] = Gate::interrupt(handler, stack_for(29).ist_index().unwrap_or(0));
    }
    for &(vector, handler) in extra.iter().filter(|(vector, _)| *vector >= 32) {
        gates[usize::from(vector)] = Gate::interrupt(handler, 0);
    }
    let table = Box::leak(Box::new(gates));
    let idtr = Idtr {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: table.as_ptr() as u64,
    };
    // SAFETY: the table is leaked (lives forever) and holds valid gates for vectors 0-31
    // pointing at the stubs in exceptions.s; the rest are not present.
    unsafe { asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags)) };
}
