//! The reset path (`boot.s`) and the hand-over to the kernel (`handover.s`), with the constants
//! they share with the Rust side.

use ward_attestation::guest::snp::{self as snp, cpuid_page, ghcb_msr};
use ward_loader::cpu_baseline as baseline;
use ward_loader::layout;

/// GDT selector of the flat 32-bit code segment.
pub const CODE32_SELECTOR: u16 = 0x08;
/// GDT selector of the flat data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// GDT selector of the 64-bit code segment (CS at kernel entry).
pub const CODE64_SELECTOR: u16 = 0x18;

/// Where `boot.s` leaves what it learnt in 32-bit mode for the Rust loader: 16 bytes right
/// above the boot stack (XCR0 to enable, the C-bit position or 0, SEV_STATUS).
const BOOT_FACTS: u64 = layout::STACK_TOP - 16;
const FACT_XCR0: u64 = 0;
const FACT_C_BIT: u64 = 4;
const FACT_SEV_STATUS: u64 = 8;

/// GHCBInfo of the SEV information response (GHCB spec 56421 §2.3.1; `ghcb_msr` decodes it
/// again in Rust).
const GHCB_SEV_INFO_RESPONSE: u64 = 0x001;

/// isa-debug-exit port: QEMU exits with `(value << 1) | 1` when it is written.
pub const EXIT_PORT: u16 = 0xF4;
/// Value written on a fatal loader error: QEMU's exit status becomes 33.
pub const EXIT_FAILURE: u32 = 0x10;

core::arch::global_asm!(
    include_str!("boot.s"),
    include_str!("snp_early.s"),
    CODE32 = const CODE32_SELECTOR,
    DATA = const DATA_SELECTOR,
    CODE64 = const CODE64_SELECTOR,
    LEAF1_ECX = const baseline::LEAF1_ECX,
    LEAF7_EBX = const baseline::LEAF7_EBX,
    AVX512F = const baseline::LEAF7_EBX_AVX512F,
    EXT1_ECX = const baseline::EXT1_ECX,
    EXT1_EDX = const baseline::EXT1_EDX,
    XCR0_AVX = const baseline::XCR0_AVX,
    XCR0_AVX512 = const baseline::XCR0_AVX512,
    BOOT_FACTS = const BOOT_FACTS,
    FACT_XCR0 = const FACT_XCR0,
    FACT_C_BIT = const FACT_C_BIT,
    FACT_SEV_STATUS = const FACT_SEV_STATUS,
    MSR_SEV_STATUS = const snp::MSR_SEV_STATUS,
    MSR_GHCB = const snp::MSR_GHCB,
    SEV_ANY = const snp::SEV_STATUS_SEV | snp::SEV_STATUS_SEV_ES | snp::SEV_STATUS_SEV_SNP,
    SEV_ES = const snp::SEV_STATUS_SEV_ES,
    SEV_SNP = const snp::SEV_STATUS_SEV_SNP,
    GHCB_SEV_INFO_REQUEST = const ghcb_msr::sev_info_request(),
    GHCB_SEV_INFO_RESPONSE = const GHCB_SEV_INFO_RESPONSE,
    GHCB_PROTOCOL_VERSION = const ghcb_msr::PROTOCOL_VERSION,
    SNP_CPUID_PAGE = const layout::SNP_CPUID_PAGE,
    CPUID_PAGE_MAX_ENTRIES = const cpuid_page::MAX_ENTRIES,
    BOOT_PML4 = const layout::BOOT_PML4,
    BOOT_PDPT = const layout::BOOT_PDPT,
    BOOT_PD0 = const layout::BOOT_PD0,
    BOOT_TABLES_END = const layout::BOOT_TABLES_END,
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
