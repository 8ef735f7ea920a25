//! The reset path (`boot.s`) and the hand-over to the kernel (`handover.s`), with the constants
//! they share with the Rust side.

use ward_loader::layout;

/// GDT selector of the flat 32-bit code segment.
pub const CODE32_SELECTOR: u16 = 0x08;
/// GDT selector of the flat data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// GDT selector of the 64-bit code segment (CS at kernel entry).
pub const CODE64_SELECTOR: u16 = 0x18;

/// CPUID.1:ECX bits the target baseline needs: SSE3, PCLMULQDQ, SSSE3, FMA, SSE4.1, SSE4.2, MOVBE,
/// POPCNT, AES, XSAVE, AVX, F16C.
const LEAF1_ECX: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 9)
    | (1 << 12)
    | (1 << 19)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 25)
    | (1 << 26)
    | (1 << 28)
    | (1 << 29);
/// CPUID.7.0:EBX bits: BMI1, AVX2, BMI2.
const LEAF7_EBX: u32 = (1 << 3) | (1 << 5) | (1 << 8);
/// CPUID.80000001:ECX bits: LZCNT.
const EXT1_ECX: u32 = 1 << 5;
/// CPUID.80000001:EDX bits: NX (EFER.NXE is set unconditionally) and long mode.
const EXT1_EDX: u32 = (1 << 20) | (1 << 29);
/// XCR0 x87 | SSE | AVX.
const XCR0_AVX: u32 = 0x7;
/// XCR0 opmask | ZMM_Hi256 | Hi16_ZMM.
const XCR0_AVX512: u32 = 0xE0;

/// isa-debug-exit port: QEMU exits with `(value << 1) | 1` when it is written.
pub const EXIT_PORT: u16 = 0xF4;
/// Value written on a fatal loader error: QEMU's exit status becomes 33.
pub const EXIT_FAILURE: u32 = 0x10;

core::arch::global_asm!(
    include_str!("boot.s"),
    CODE32 = const CODE32_SELECTOR,
    DATA = const DATA_SELECTOR,
    CODE64 = const CODE64_SELECTOR,
    LEAF1_ECX = const LEAF1_ECX,
    LEAF7_EBX = const LEAF7_EBX,
    EXT1_ECX = const EXT1_ECX,
    EXT1_EDX = const EXT1_EDX,
    XCR0_AVX = const XCR0_AVX,
    XCR0_AVX512 = const XCR0_AVX512,
    BOOT_PML4 = const layout::BOOT_PML4,
    BOOT_PDPT = const layout::BOOT_PDPT,
    BOOT_PD0 = const layout::BOOT_PD0,
    BOOT_TABLES_END = const layout::BOOT_TABLES_END,
    STACK_TOP = const layout::STACK_TOP,
    EXIT_PORT = const EXIT_PORT,
    EXIT_FAILURE = const EXIT_FAILURE,
    loader_main = sym super::loader_main,
    options(att_syntax)
);

core::arch::global_asm!(include_str!("handover.s"), options(att_syntax));

unsafe extern "sysv64" {
    /// Switches to `stack_top` and calls `entry(boot_info)`; never returns.
    fn ward_handover(entry: u64, boot_info: u64, stack_top: u64) -> !;
    /// Start of the loader's ROM area (linker script).
    static __loader_rom_start: u8;
}

/// Physical address where the loader's code starts.
pub fn loader_rom_start() -> u64 {
    core::ptr::addr_of!(__loader_rom_start) as u64
}

/// Jumps to the kernel: `rdi = boot_info`, `rsp = stack_top` (16-byte aligned before the call,
/// as the SysV ABI wants), interrupts off.
///
/// # Safety
/// `entry` must be the mapped entry point of a loaded kernel, `boot_info` the address of a filled
/// BootInfo and `stack_top` the top of a mapped, writable stack; the loader's state dies here.
pub unsafe fn hand_over(entry: u64, boot_info: u64, stack_top: u64) -> ! {
    // SAFETY: the caller upholds the contract above.
    unsafe { ward_handover(entry, boot_info, stack_top) }
}
