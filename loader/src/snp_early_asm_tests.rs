//! Runs the boot path's 32-bit SNP routines (`firmware/snp_early.s`) on the host, in
//! compatibility mode: the CPUID page lookup must answer exactly as [`super::boot_cpuid`] over the
//! same page, and the C-bit check must decide as `ghcb_msr::decode_sev_info` and `snp::detect`.
//!
//! A 64-bit Linux process can run 32-bit code by far-jumping to the kernel's 32-bit user code
//! segment (selector 0x23) and back to the 64-bit one (0x33); the code, its stack and the data it
//! touches must lie below 4 GiB. The lookup reads the page at its fixed firmware address
//! (`layout::SNP_CPUID_PAGE`, 0x107000), so the test maps a page there; the harness below plus
//! the routine are copied into a low executable mapping and called through a small 64-bit stub.

use super::{boot_cpuid, required_xcr0};
use crate::layout::SNP_CPUID_PAGE;
use std::sync::Mutex;
use ward_attestation::guest::snp::cpuid_page::{CpuidEntry, CpuidTable, MAX_ENTRIES};
use ward_attestation::guest::snp::ghcb_msr::{self, MsrProtocolError, PROTOCOL_VERSION};
use ward_attestation::guest::snp::{self as snp, SnpDetection};

core::arch::global_asm!(
    r#"
.pushsection .text.ward_cpuid_lookup32, "ax"
.balign 16
.global ward_lookup32_start
ward_lookup32_start:
.code64
# rdi = io, below 4 GiB, as u32: [routine (0 lookup, 1 C-bit), input EAX, input ECX/EDX,
# output EAX, EBX, ECX, EDX, refusal (0 none, 1 snp_terminate, 2 snp_terminate_protocol)]
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rdi, %rbp
    mov %rsp, lookup32_saved_rsp(%rip)
    lea lookup32_stack_top(%rip), %rsp
    lea lookup32_entry(%rip), %rax
    pushq $0x23
    push %rax
    lretq
.code32
lookup32_entry:
    mov %ss, %eax
    mov %eax, %ds
    mov %eax, %es
    mov 4(%ebp), %eax
    mov 8(%ebp), %ecx
    mov 8(%ebp), %edx
    cmpl $0, 0(%ebp)
    jne 2f
    call cpuid_page_lookup
    jmp 3f
2:  call snp_checked_c_bit
3:  mov %eax, 12(%ebp)
    mov %ebx, 16(%ebp)
    mov %ecx, 20(%ebp)
    mov %edx, 24(%ebp)
lookup32_back:
    call 1f
1:  pop %eax
    add $(lookup32_return - 1b), %eax
    push $0x33
    push %eax
    lret
# The firmware asks the hypervisor to end the guest here; the test records which.
snp_terminate:
    movl $1, 28(%ebp)
    jmp lookup32_back
snp_terminate_protocol:
    movl $2, 28(%ebp)
    jmp lookup32_back
.code64
lookup32_return:
    mov lookup32_saved_rsp(%rip), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
"#,
    include_str!("firmware/snp_early.s"),
    r#"
.balign 8
lookup32_saved_rsp:
    .quad 0
.balign 16
    .skip 512
lookup32_stack_top:
.global ward_lookup32_end
ward_lookup32_end:
.code64
.popsection
"#,
    SNP_CPUID_PAGE = const SNP_CPUID_PAGE,
    CPUID_PAGE_MAX_ENTRIES = const MAX_ENTRIES,
    GHCB_SEV_INFO_RESPONSE = const 0x001,
    GHCB_PROTOCOL_VERSION = const PROTOCOL_VERSION,
    options(att_syntax)
);

unsafe extern "C" {
    static ward_lookup32_start: u8;
    static ward_lookup32_end: u8;
}

const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_32BIT: u64 = 0x40;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

/// mmap(2) without libc.
fn mmap(address: u64, length: u64, protection: u64, flags: u64) -> u64 {
    let result: i64;
    // SAFETY: an anonymous private mapping; with MAP_FIXED_NOREPLACE or no fixed address it
    // cannot replace anything the process already maps.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") 9i64 => result,
            in("rdi") address,
            in("rsi") length,
            in("rdx") protection,
            in("r10") flags,
            in("r8") -1i64,
            in("r9") 0u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    assert!(result >= 0, "mmap({address:#x}) failed: errno {}", -result);
    result as u64
}

/// The low mappings, made once: the CPUID page at its firmware address, and the harness.
struct Low {
    entry: u64,
    io: u64,
}

fn low() -> &'static Low {
    static LOW: std::sync::OnceLock<Low> = std::sync::OnceLock::new();
    LOW.get_or_init(|| {
        let page = mmap(
            SNP_CPUID_PAGE,
            0x1000,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
        );
        assert_eq!(page, SNP_CPUID_PAGE);
        let start = &raw const ward_lookup32_start as u64;
        let end = &raw const ward_lookup32_end as u64;
        let length = end - start;
        assert!(length < 0x1000);
        let code = mmap(
            0,
            0x2000,
            PROT_READ | PROT_WRITE | PROT_EXEC,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
        );
        assert!(code + 0x2000 <= 1 << 32);
        // SAFETY: `code` is a fresh 8 KiB mapping; the harness is `length` bytes of this
        // binary's text, position-independent (relative jumps and RIP-relative data only).
        unsafe {
            core::ptr::copy_nonoverlapping(start as *const u8, code as *mut u8, length as usize)
        };
        Low {
            entry: code,
            io: code + 0x1000,
        }
    })
}

/// How a routine ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Returned with EAX..EDX.
    Returned([u32; 4]),
    /// Went to `snp_terminate`.
    Terminated,
    /// Went to `snp_terminate_protocol`.
    TerminatedProtocol,
}

/// Runs routine `routine` (0 lookup, 1 C-bit check) with the CPUID page `page`.
fn run32(page: &[u8; 4096], routine: u32, eax: u32, ecx_edx: u32) -> Outcome {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let low = low();
    // SAFETY: both mappings are this module's, live for the process, and only used under the
    // lock; the harness is called with the System V ABI it implements (callee-saved registers
    // restored, io pointer in rdi).
    let out = unsafe {
        core::ptr::copy_nonoverlapping(page.as_ptr(), SNP_CPUID_PAGE as *mut u8, 4096);
        let io = low.io as *mut [u32; 8];
        io.write([
            routine,
            eax,
            ecx_edx,
            0xAAAA_AAAA,
            0xBBBB_BBBB,
            0xCCCC_CCCC,
            0xDDDD_DDDD,
            0,
        ]);
        let call: extern "sysv64" fn(*mut [u32; 8]) = core::mem::transmute(low.entry as usize);
        call(io);
        io.read()
    };
    match out[7] {
        0 => Outcome::Returned([out[3], out[4], out[5], out[6]]),
        1 => Outcome::Terminated,
        _ => Outcome::TerminatedProtocol,
    }
}

/// The lookup's answer for (`leaf`, `subleaf`) over `page`, or `None` when it refused the page.
fn lookup32(page: &[u8; 4096], leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
    match run32(page, 0, leaf, subleaf) {
        Outcome::Returned(r) => Some(r),
        _ => None,
    }
}

/// The C-bit check's outcome for the SEV information `response` over `page`.
fn c_bit32(page: &[u8; 4096], response: u64) -> Outcome {
    match run32(page, 1, response as u32, (response >> 32) as u32) {
        Outcome::Returned(r) => Outcome::Returned([r[0], 0, 0, 0]),
        other => other,
    }
}

/// What the Rust side decides for the same inputs (the SEV_STATUS of an SNP guest).
fn c_bit_reference(page: &[u8; 4096], response: u64) -> Outcome {
    let table = CpuidTable::parse(page).unwrap();
    let info = match ghcb_msr::decode_sev_info(response) {
        Ok(info) => info,
        Err(MsrProtocolError::UnsupportedVersion { .. }) => return Outcome::TerminatedProtocol,
        Err(_) => return Outcome::Terminated,
    };
    let ebx = boot_cpuid(&table, snp::CPUID_SEV_LEAF, 0)[1];
    match snp::detect(0x7, ebx, info.c_bit) {
        Ok(SnpDetection::Snp { c_bit }) => Outcome::Returned([c_bit.into(), 0, 0, 0]),
        _ => Outcome::Terminated,
    }
}

fn page_with(entries: &[CpuidEntry]) -> [u8; 4096] {
    let mut page = [0u8; 4096];
    page[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = 16 + 48 * i;
        let fields = [
            e.eax_in,
            e.ecx_in,
            e.xcr0_in as u32,
            (e.xcr0_in >> 32) as u32,
            e.xss_in as u32,
            (e.xss_in >> 32) as u32,
            e.out[0],
            e.out[1],
            e.out[2],
            e.out[3],
        ];
        for (j, v) in fields.iter().enumerate() {
            page[at + 4 * j..at + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    page
}

fn entry(eax_in: u32, ecx_in: u32, xcr0_in: u64, out: [u32; 4]) -> CpuidEntry {
    CpuidEntry {
        eax_in,
        ecx_in,
        xcr0_in,
        xss_in: 0,
        out,
    }
}

/// A Genoa-like page, with what a hypervisor may put there: sub-leaves of leaf 7, leaf 0xD for
/// two XCR0 values, and garbage ECX_IN on leaves without sub-leaves.
fn genoa_page() -> [u8; 4096] {
    page_with(&[
        entry(0, 0, 0, [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65]),
        entry(
            1,
            0x55,
            0,
            [0x00A1_0F11, 0x0080_0800, 0x7EFA_3203, 0x178B_FBFF],
        ),
        entry(7, 1, 0, [0x30, 0, 0, 0]),
        entry(7, 0, 0, [1, 0xF1BF_97A9, 0x0040_5FCE, 0x1000_0010]),
        entry(0xD, 0, 0x7, [0xE7, 0x340, 0x988, 0]),
        entry(0xD, 0, 0xE7, [0xE7, 0x980, 0x988, 0]),
        entry(0xD, 1, 0x7, [0xF, 0x340, 0, 0]),
        entry(0x8000_0000, 0, 0, [0x8000_0028, 0, 0, 0]),
        entry(
            0x8000_0001,
            0,
            0,
            [0x00A1_0F11, 0x4000_0000, 0x7503_F3FF, 0x2FD3_FBFF],
        ),
        entry(0x8000_001F, 0, 0, [0x1_0003, 0x0000_0173, 0x1FD, 1]),
    ])
}

#[test]
fn the_assembly_answers_as_the_rust_reference() {
    let page = genoa_page();
    let table = CpuidTable::parse(&page).unwrap();
    let queries = [
        (0, 0),
        (1, 0),
        (1, 9),
        (7, 0),
        (7, 1),
        (7, 2),
        (0xD, 0),
        (0xD, 1),
        (0xD, 2),
        (0x8000_0000, 0),
        (0x8000_0001, 0),
        (0x8000_001F, 0),
        (0x8000_001F, 3),
        (0x21, 0),
        (0x4000_0000, 0),
    ];
    for (leaf, subleaf) in queries {
        assert_eq!(
            lookup32(&page, leaf, subleaf),
            Some(boot_cpuid(&table, leaf, subleaf)),
            "leaf {leaf:#x}.{subleaf}"
        );
    }
    // The C-bit position the boot path takes, and the XCR0 both sides decide.
    assert_eq!(lookup32(&page, 0x8000_001F, 0).unwrap()[1] & 0x3F, 51);
    let from_assembly = required_xcr0(|l, s| lookup32(&page, l, s).unwrap());
    assert_eq!(from_assembly, Ok(0xE7));
    assert_eq!(
        from_assembly,
        required_xcr0(|l, s| boot_cpuid(&table, l, s))
    );
}

#[test]
fn the_assembly_reads_exactly_count_entries() {
    // 64 entries, the wanted one last: found.
    let mut entries: Vec<CpuidEntry> = (0..63)
        .map(|i| entry(0x4000_0000 + i, 0, 0, [i, 0, 0, 0]))
        .collect();
    entries.push(entry(0x8000_001F, 0, 0, [1, 0x173, 0, 0]));
    let page = page_with(&entries);
    assert_eq!(lookup32(&page, 0x8000_001F, 0), Some([1, 0x173, 0, 0]));
    // The same bytes with a count of 63: the last entry is not part of the table.
    let mut shorter = page;
    shorter[0] = 63;
    assert_eq!(lookup32(&shorter, 0x8000_001F, 0), Some([0; 4]));
    // An empty page answers zeros.
    assert_eq!(lookup32(&[0; 4096], 1, 0), Some([0; 4]));
}

#[test]
fn the_assembly_refuses_an_oversized_table() {
    let mut page = genoa_page();
    page[0..4].copy_from_slice(&65u32.to_le_bytes());
    assert_eq!(lookup32(&page, 1, 0), None);
    page[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(lookup32(&page, 1, 0), None);
}

/// An SEV information response: protocol `min..=max`, C-bit `c_bit`, GHCBInfo `info`.
fn sev_info(min: u16, max: u16, c_bit: u8, info: u16) -> u64 {
    (u64::from(max) << 48) | (u64::from(min) << 32) | (u64::from(c_bit) << 24) | u64::from(info)
}

#[test]
fn the_c_bit_check_decides_as_the_rust_side() {
    let with_c_bit = |ebx: u32| {
        page_with(&[
            entry(1, 0, 0, [0x00A1_0F11, 0, 0, 0]),
            entry(0x8000_001F, 0, 0, [0x1_0003, ebx, 0x1FD, 1]),
        ])
    };
    let pages = [
        with_c_bit(0x173),
        with_c_bit(0x16F),
        with_c_bit(0x17F),
        with_c_bit(0x160),
        with_c_bit(0x150),
        with_c_bit(0x0),
        page_with(&[entry(1, 0, 0, [0; 4])]),
    ];
    let mut seen = [0usize; 3];
    for page in &pages {
        for c_bit in [51u8, 47, 63, 32, 16, 0, 255] {
            for (min, max) in [(1, 2), (2, 2), (2, 5), (1, 1), (3, 4), (0, 0xFFFF)] {
                for info in [0x001u16, 0x005, 0x002, 0x101] {
                    let response = sev_info(min, max, c_bit, info) | 0x00F0_0000;
                    let expected = c_bit_reference(page, response);
                    assert_eq!(
                        c_bit32(page, response),
                        expected,
                        "response {response:#x}, page C-bit {:#x}",
                        boot_cpuid(&CpuidTable::parse(page).unwrap(), 0x8000_001F, 0)[1]
                    );
                    seen[match expected {
                        Outcome::Returned(_) => 0,
                        Outcome::Terminated => 1,
                        Outcome::TerminatedProtocol => 2,
                    }] += 1;
                }
            }
        }
    }
    // Every outcome occurs; the accepted ones are exactly the agreeing plausible positions.
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    assert_eq!(
        c_bit32(&pages[0], sev_info(1, 2, 51, 1)),
        Outcome::Returned([51, 0, 0, 0])
    );
    assert_eq!(
        c_bit32(&pages[0], sev_info(1, 2, 47, 1)),
        Outcome::Terminated
    );
    assert_eq!(
        c_bit32(&pages[0], sev_info(3, 4, 51, 1)),
        Outcome::TerminatedProtocol
    );
}
