//! Intel TDX in the loader: detection (CPUID leaf 0x21), the #VE handler that carries the
//! loader's port I/O to the host as TDVMCALLs, TDG.VP.INFO for the shared bit, and accepting
//! RAM with TDG.MEM.PAGE.ACCEPT before the kernel is placed in it.
//!
//! Implemented against the TDX Module ABI and GHCI specifications; it has never run on TDX
//! hardware (docs/confidential-guests.md). On other platforms only [`Tdx::detect`] runs, and it
//! changes nothing.

use super::boot::CODE64_SELECTOR;
use core::cell::UnsafeCell;
use core::fmt;
use ward_loader::acceptance::{self, AcceptError, AcceptStats, PageSize};
use ward_loader::layout;
use ward_loader::memory::E820Entry;

const LEAF_VP_VMCALL: u64 = 0;
const LEAF_VP_INFO: u64 = 1;
const LEAF_VP_VEINFO_GET: u64 = 3;
const LEAF_MEM_PAGE_ACCEPT: u64 = 6;
const VMCALL_EXPOSE_R10_R15: u64 = 0xFC00;
const VMCALL_IO: u64 = 30;
const EXIT_REASON_IO: u32 = 30;
const VE_VECTOR: usize = 20;
const E820_RAM: u32 = 1;

/// Registers in and out of TDCALL; `tdx.s` loads and stores exactly these, in this order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TdcallRegisters {
    rax: u64,
    rcx: u64,
    rdx: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

/// The interrupted context as `ward_ve_entry` saved it.
#[repr(C)]
struct VeFrame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// XSAVE area for the #VE entry (64-byte aligned; 4 KiB holds x87/SSE/AVX/AVX-512 state).
#[repr(C, align(64))]
struct XsaveArea(UnsafeCell<[u8; 4096]>);
// SAFETY: only the #VE entry touches it, on the one CPU the loader runs on, and the handler
// does not return from a nested #VE (its fatal path never returns).
unsafe impl Sync for XsaveArea {}
static XSAVE_AREA: XsaveArea = XsaveArea(UnsafeCell::new([0; 4096]));

/// IDT entries 0..=20; only #VE is present, so any other exception escalates to a triple fault
/// (as it would without an IDT).
#[repr(C, align(16))]
struct Idt(UnsafeCell<[u64; 2 * (VE_VECTOR + 1)]>);
// SAFETY: written once by `install_ve_handler` before `lidt`, read only by the CPU afterwards.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([0; 2 * (VE_VECTOR + 1)]));

core::arch::global_asm!(
    include_str!("tdx.s"),
    handler = sym ve_handler,
    xsave_area = sym XSAVE_AREA,
    options(att_syntax)
);

unsafe extern "sysv64" {
    fn ward_tdcall(registers: *mut TdcallRegisters);
    fn ward_ve_entry();
}

fn tdcall(registers: &mut TdcallRegisters) {
    // SAFETY: TDCALL only exists inside a TD, and this is reached only after `Tdx::detect`
    // found one; the stub touches nothing but the structure it is given.
    unsafe { ward_tdcall(registers) }
}

/// Why the TDX set-up failed.
#[derive(Clone, Copy, Debug)]
pub enum TdxError {
    /// TDG.VP.INFO failed or reported a GPA width other than 48 or 52.
    VpInfo { status: u64, gpa_width: u64 },
    /// Accepting RAM failed.
    Accept(AcceptError),
}

impl fmt::Display for TdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VpInfo { status, gpa_width } => {
                write!(f, "TDG.VP.INFO: status {status:#x}, GPA width {gpa_width}")
            }
            Self::Accept(e) => write!(f, "accepting RAM: {e}"),
        }
    }
}

/// A TD the loader runs in.
pub struct Tdx {
    _detected: (),
}

impl Tdx {
    /// Detects TDX (CPUID leaf 0x21 is answered by the TDX module, not the host) and, inside a
    /// TD, installs the #VE handler before any port I/O.
    pub fn detect() -> Option<Self> {
        let leaf = core::arch::x86_64::__cpuid_count(0x21, 0);
        let mut signature = [0u8; 12];
        signature[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
        signature[8..12].copy_from_slice(&leaf.ecx.to_le_bytes());
        if &signature != b"IntelTDX    " {
            return None;
        }
        install_ve_handler();
        Some(Self { _detected: () })
    }

    /// The shared-bit mask from TDG.VP.INFO (GPA width 48 or 52).
    pub fn shared_mask(&self) -> Result<u64, TdxError> {
        let mut r = TdcallRegisters {
            rax: LEAF_VP_INFO,
            ..Default::default()
        };
        tdcall(&mut r);
        let gpa_width = r.rcx & 0x3F;
        if r.rax != 0 || !(gpa_width == 48 || gpa_width == 52) {
            return Err(TdxError::VpInfo {
                status: r.rax,
                gpa_width,
            });
        }
        Ok(1 << (gpa_width - 1))
    }

    /// Accepts every RAM range of the e820 map except the loader's working area, which the
    /// TDVF metadata had the host add (accepted) before launch.
    pub fn accept_ram(
        &self,
        e820: impl Iterator<Item = E820Entry>,
    ) -> Result<AcceptStats, TdxError> {
        let loader_area = layout::LOADER_AREA_START..layout::LOADER_AREA_END;
        let skip = core::slice::from_ref(&loader_area);
        let mut stats = AcceptStats::default();
        let mut accept = |address: u64, size: PageSize| {
            let level = match size {
                PageSize::Small => 0,
                PageSize::Large => 1,
            };
            let mut r = TdcallRegisters {
                rax: LEAF_MEM_PAGE_ACCEPT,
                rcx: address | level,
                ..Default::default()
            };
            tdcall(&mut r);
            acceptance::tdx_accept_outcome(r.rax)
        };
        for entry in e820.filter(|e| e.kind == E820_RAM) {
            let start = entry.address.next_multiple_of(acceptance::SMALL);
            let end = entry.address.saturating_add(entry.length) & !(acceptance::SMALL - 1);
            if start < end {
                acceptance::accept_range_except(start..end, skip, &mut accept, &mut stats)
                    .map_err(TdxError::Accept)?;
            }
        }
        Ok(stats)
    }
}

fn install_ve_handler() {
    let handler = ward_ve_entry as *const () as u64;
    // 64-bit interrupt gate: present, DPL 0, type 0xE, the loader's code segment, IST 0.
    let low = (handler & 0xFFFF)
        | (u64::from(CODE64_SELECTOR) << 16)
        | (0x8E << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    let high = handler >> 32;
    // SAFETY: nothing else references the IDT yet; `lidt` below makes the CPU its only reader.
    unsafe {
        let idt = &mut *IDT.0.get();
        idt[2 * VE_VECTOR] = low;
        idt[2 * VE_VECTOR + 1] = high;
    }
    #[repr(C, packed)]
    struct Descriptor {
        limit: u16,
        base: u64,
    }
    let descriptor = Descriptor {
        limit: (16 * (VE_VECTOR + 1) - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is a static that stays mapped at this address until the kernel installs
    // its own; its only present gate points at `ward_ve_entry`.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &descriptor, options(readonly, nostack, preserves_flags));
    }
}

/// The #VE handler: port I/O becomes a TDVMCALL; anything else is fatal (the loader does no
/// MMIO, and its CPUID and MSR accesses are answered by the TDX module without a #VE).
extern "sysv64" fn ve_handler(frame: &mut VeFrame) {
    let mut info = TdcallRegisters {
        rax: LEAF_VP_VEINFO_GET,
        ..Default::default()
    };
    tdcall(&mut info);
    let exit_reason = info.rcx as u32;
    let qualification = info.rdx;
    let length = info.r10 as u32;
    if info.rax != 0 || exit_reason != EXIT_REASON_IO || !(1..=15).contains(&length) {
        fatal(exit_reason, frame.rip);
    }
    // Exit qualification: size - 1 in bits 2:0, IN in bit 3, string/REP in bits 4/5, port in
    // bits 31:16.
    if qualification & 0x30 != 0 {
        fatal(exit_reason, frame.rip);
    }
    let (size, mask) = match qualification & 7 {
        0 => (1, 0xFF),
        1 => (2, 0xFFFF),
        3 => (4, 0xFFFF_FFFF),
        _ => fatal(exit_reason, frame.rip),
    };
    let is_in = qualification & (1 << 3) != 0;
    let mut call = TdcallRegisters {
        rax: LEAF_VP_VMCALL,
        rcx: VMCALL_EXPOSE_R10_R15,
        r10: 0,
        r11: VMCALL_IO,
        r12: size,
        r13: u64::from(!is_in),
        r14: (qualification >> 16) & 0xFFFF,
        r15: if is_in { 0 } else { frame.rax & mask },
        ..Default::default()
    };
    tdcall(&mut call);
    if call.rax != 0 || call.r10 != 0 {
        fatal(exit_reason, frame.rip);
    }
    if is_in {
        // IN EAX zero-extends into RAX; IN AL/AX keep the other bits.
        frame.rax = if size == 4 {
            call.r11 & mask
        } else {
            (frame.rax & !mask) | (call.r11 & mask)
        };
    }
    frame.rip += u64::from(length);
}

fn fatal(exit_reason: u32, rip: u64) -> ! {
    // Port I/O from here raises a nested #VE, which TDX delivers once VEINFO.GET has run; the
    // XSAVE area it overwrites is never restored because this path does not return.
    log::error!("unhandled #VE (exit reason {exit_reason}) at {rip:#x}");
    super::fail()
}
