//! The kernel's GDT (flat 64-bit code and data) and TSS, whose interrupt stack table gives the
//! fault handlers stacks of their own (see [`Stack`]).

use super::paging::layout::Stack;
use alloc::boxed::Box;
use core::arch::{asm, global_asm};

global_asm!(include_str!("gdt.s"));

unsafe extern "sysv64" {
    fn ward_load_gdt(gdtr: *const Gdtr, code: u64, data: u64);
}

/// Kernel code segment selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DATA: u16 = 0x10;
/// TSS selector.
pub const TSS_SELECTOR: u16 = 0x18;

/// Long-mode code: present, DPL 0, executable/readable, L = 1.
const CODE_64: u64 = 0x00af_9a00_0000_ffff;
/// Data: present, DPL 0, writable.
const DATA: u64 = 0x00cf_9200_0000_ffff;

/// The 64-bit task-state segment (Intel SDM vol. 3 §8.7).
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}

#[repr(C, packed(2))]
struct Gdtr {
    limit: u16,
    base: u64,
}

/// The two GDT words of a 64-bit available-TSS descriptor for `base`.
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = (size_of::<Tss>() - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, type 9 (available 64-bit TSS)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Builds the TSS with every IST stack of [`Stack`], loads the GDT and the task register.
/// Called once, on the kernel stack, after the kernel's page tables (which map the IST stacks)
/// are active.
pub fn init() {
    init_for_cpu(0);
}

/// [`init`] for CPU `cpu` (0 is the boot CPU): a GDT and TSS of its own, whose IST entries
/// are that CPU's stacks ([`Stack::top_on`]), which must be mapped.
pub fn init_for_cpu(cpu: usize) {
    let mut interrupt_stacks = [0u64; 7];
    for stack in Stack::ALL {
        if let Some(index) = stack.ist_index() {
            interrupt_stacks[usize::from(index) - 1] = stack.top_on(cpu).as_u64();
        }
    }
    let tss = Box::leak(Box::new(Tss {
        reserved0: 0,
        privilege_stacks: [0; 3],
        reserved1: 0,
        interrupt_stacks,
        reserved2: 0,
        reserved3: 0,
        io_map_base: size_of::<Tss>() as u16,
    }));
    let [tss_low, tss_high] = tss_descriptor(core::ptr::from_mut(tss) as u64);
    // The CPU sets the busy bit in the TSS descriptor on LTR, so the table lives in writable
    // memory that Rust never reads again: leaked and reached only through a raw pointer.
    let gdt: *mut [u64; 5] = Box::into_raw(Box::new([0, CODE_64, DATA, tss_low, tss_high]));
    let gdtr = Gdtr {
        limit: (size_of::<[u64; 5]>() - 1) as u16,
        base: gdt as u64,
    };
    // SAFETY: the GDT holds valid flat code/data descriptors at the selectors passed, and both
    // tables are leaked so they live forever; reloading segments keeps flat addressing.
    unsafe { ward_load_gdt(&gdtr, u64::from(KERNEL_CODE), u64::from(KERNEL_DATA)) };
    // SAFETY: TSS_SELECTOR indexes the available-TSS descriptor just loaded.
    unsafe { asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack, preserves_flags)) };
}
