//! CPU feature detection: what CPUID reports *and* what the OS-enabled state (XCR0) allows. A
//! vector extension is usable only when both say so.
//!
//! On SEV-SNP the hypervisor answers CPUID; there the values must come from the validated CPUID
//! page instead (the `snp` platform's job). On native they are the (untrusted, but harmless for
//! this purpose) hypervisor's answers: a lie can only pick a slower path or crash with #UD.

use core::arch::x86_64::__cpuid_count;

/// The vector features Ward cares about, as reported by CPUID and XCR0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// CPUID.1:ECX.OSXSAVE — the OS enabled XSAVE/XGETBV.
    pub osxsave: bool,
    /// CPUID.1:ECX.AVX.
    pub avx: bool,
    /// CPUID.1:ECX.FMA.
    pub fma: bool,
    /// CPUID.7.0:EBX.AVX2.
    pub avx2: bool,
    /// CPUID.7.0:EBX.AVX512F.
    pub avx512f: bool,
    /// CPUID.7.0:EBX.AVX512BW.
    pub avx512bw: bool,
    /// CPUID.7.0:EBX.AVX512VL.
    pub avx512vl: bool,
    /// CPUID.7.0:ECX.AVX512_VNNI.
    pub avx512vnni: bool,
    /// CPUID.1:ECX.RDRAND.
    pub rdrand: bool,
    /// CPUID.7.0:EBX.RDSEED.
    pub rdseed: bool,
    /// XCR0 (0 when OSXSAVE is off).
    pub xcr0: u64,
}

/// XCR0 bits for SSE and AVX (YMM upper halves) state.
pub const XCR0_AVX: u64 = 0b110;
/// XCR0 bits for AVX-512 state: opmask, ZMM_Hi256, Hi16_ZMM.
pub const XCR0_AVX512: u64 = 0b1110_0000;

impl CpuFeatures {
    /// Reads CPUID (and XCR0 when the OS enabled it) on the current CPU.
    pub fn detect() -> Self {
        let leaf1 = __cpuid_count(1, 0);
        let max_leaf = __cpuid_count(0, 0).eax;
        let leaf7 = if max_leaf >= 7 {
            __cpuid_count(7, 0)
        } else {
            __cpuid_count(0, 0)
        };
        let (ebx7, ecx7) = if max_leaf >= 7 {
            (leaf7.ebx, leaf7.ecx)
        } else {
            (0, 0)
        };
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let xcr0 = if osxsave {
            // SAFETY: CPUID says the OS enabled XSAVE (CR4.OSXSAVE), so XGETBV with ECX = 0 is
            // defined and only reads XCR0.
            unsafe { core::arch::x86_64::_xgetbv(0) }
        } else {
            0
        };
        Self {
            osxsave,
            avx: leaf1.ecx & (1 << 28) != 0,
            fma: leaf1.ecx & (1 << 12) != 0,
            rdrand: leaf1.ecx & (1 << 30) != 0,
            avx2: ebx7 & (1 << 5) != 0,
            rdseed: ebx7 & (1 << 18) != 0,
            avx512f: ebx7 & (1 << 16) != 0,
            avx512bw: ebx7 & (1 << 30) != 0,
            avx512vl: ebx7 & (1 << 31) != 0,
            avx512vnni: ecx7 & (1 << 11) != 0,
            xcr0,
        }
    }
}
