//! The CPU the loader and kernel are compiled for (x86-64-v3 + AES + PCLMULQDQ + NX), and the
//! XCR0 value the boot path enables, decided from CPUID answers.
//!
//! The boot assembly (`firmware/boot.s`) makes this decision before the first Rust instruction —
//! from the CPUID instruction on a plain VM or in a TD, from the validated CPUID page under
//! SEV-SNP — with these constants. Under SNP the Rust loader runs [`required_xcr0`] again over
//! the parsed CPUID page and checks the XCR0 the assembly set, so the page-reading assembly is
//! cross-checked by this host-tested code.

use core::fmt;
use ward_attestation::guest::snp::cpuid_page::CpuidTable;

/// CPUID.1:ECX bits the target baseline needs: SSE3, PCLMULQDQ, SSSE3, FMA, SSE4.1, SSE4.2, MOVBE,
/// POPCNT, AES, XSAVE, AVX, F16C.
pub const LEAF1_ECX: u32 = (1 << 0)
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
pub const LEAF7_EBX: u32 = (1 << 3) | (1 << 5) | (1 << 8);
/// CPUID.7.0:EBX bit 16: AVX512F.
pub const LEAF7_EBX_AVX512F: u32 = 1 << 16;
/// CPUID.80000001:ECX bits: LZCNT.
pub const EXT1_ECX: u32 = 1 << 5;
/// CPUID.80000001:EDX bits: NX (EFER.NXE is set unconditionally) and long mode.
pub const EXT1_EDX: u32 = (1 << 20) | (1 << 29);
/// XCR0 x87 | SSE | AVX.
pub const XCR0_AVX: u32 = 0x7;
/// XCR0 opmask | ZMM_Hi256 | Hi16_ZMM.
pub const XCR0_AVX512: u32 = 0xE0;

/// The first requirement a CPU fails (the boot assembly prints the same sentences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Leaf0xD,
    Leaf1,
    Leaf7,
    Extended,
    Xcr0,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leaf0xD => "no CPUID leaf 0xD (XSAVE state)",
            Self::Leaf1 => {
                "CPUID.1:ECX lacks one of SSE3 PCLMULQDQ SSSE3 FMA SSE4.1 SSE4.2 MOVBE POPCNT AES XSAVE AVX F16C"
            }
            Self::Leaf7 => "CPUID.7:EBX lacks one of BMI1 AVX2 BMI2",
            Self::Extended => "CPUID.80000001 lacks one of LZCNT NX LM",
            Self::Xcr0 => "XCR0 cannot hold x87|SSE|AVX state",
        })
    }
}

fn has_all(value: u32, bits: u32) -> bool {
    value & bits == bits
}

/// Checks the baseline with `cpuid(leaf, subleaf) -> [eax, ebx, ecx, edx]` and returns the XCR0
/// value to enable: x87|SSE|AVX, plus the AVX-512 state when the CPU has AVX512F and supports
/// all three of its state components.
pub fn required_xcr0(mut cpuid: impl FnMut(u32, u32) -> [u32; 4]) -> Result<u32, Missing> {
    if cpuid(0, 0)[0] < 0xD {
        return Err(Missing::Leaf0xD);
    }
    if !has_all(cpuid(1, 0)[2], LEAF1_ECX) {
        return Err(Missing::Leaf1);
    }
    let leaf7_ebx = cpuid(7, 0)[1];
    if !has_all(leaf7_ebx, LEAF7_EBX) {
        return Err(Missing::Leaf7);
    }
    if cpuid(0x8000_0000, 0)[0] < 0x8000_0001 {
        return Err(Missing::Extended);
    }
    let extended = cpuid(0x8000_0001, 0);
    if !has_all(extended[2], EXT1_ECX) || !has_all(extended[3], EXT1_EDX) {
        return Err(Missing::Extended);
    }
    let supported = cpuid(0xD, 0)[0];
    if !has_all(supported, XCR0_AVX) {
        return Err(Missing::Xcr0);
    }
    if leaf7_ebx & LEAF7_EBX_AVX512F != 0 && has_all(supported, XCR0_AVX512) {
        Ok(XCR0_AVX | XCR0_AVX512)
    } else {
        Ok(XCR0_AVX)
    }
}

/// CPUID as the boot path answers it under SNP (`firmware/snp_early.s`): the validated page's
/// first entry for `leaf` (and `subleaf`, for the indexed leaves 7 and 0xD only; leaf 0xD's
/// XCR0/XSS-dependent sizes are ignored, only its supported-state mask is used), zeros when the
/// page has none.
pub fn boot_cpuid(table: &CpuidTable, leaf: u32, subleaf: u32) -> [u32; 4] {
    table
        .entries()
        .iter()
        .find(|e| e.eax_in == leaf && (!matches!(leaf, 7 | 0xD) || e.ecx_in == subleaf))
        .map_or([0; 4], |e| e.out)
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
#[path = "snp_early_asm_tests.rs"]
mod asm_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// CPUID answers of an EPYC-like CPU with AVX-512 (values as a Genoa CPUID page holds them).
    fn genoa(leaf: u32, subleaf: u32) -> [u32; 4] {
        match (leaf, subleaf) {
            (0, _) => [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
            (1, _) => [0x00A1_0F11, 0x0080_0800, 0x7EFA_3203, 0x178B_FBFF],
            (7, 0) => [1, 0xF1BF_97A9, 0x0040_5FCE, 0x1000_0010],
            (0xD, 0) => [0xE7, 0x980, 0x988, 0],
            (0x8000_0000, _) => [0x8000_0028, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
            (0x8000_0001, _) => [0x00A1_0F11, 0x4000_0000, 0x7503_F3FF, 0x2FD3_FBFF],
            _ => [0; 4],
        }
    }

    #[test]
    fn a_full_cpu_gets_avx512_state() {
        assert_eq!(required_xcr0(genoa), Ok(0xE7));
    }

    #[test]
    fn avx512_state_needs_the_feature_and_all_three_components() {
        let no_avx512f = |l, s| {
            let mut r = genoa(l, s);
            if l == 7 {
                r[1] &= !LEAF7_EBX_AVX512F;
            }
            r
        };
        assert_eq!(required_xcr0(no_avx512f), Ok(0x7));
        let no_zmm_state = |l, s| {
            let mut r = genoa(l, s);
            if l == 0xD {
                r[0] = 0x67;
            }
            r
        };
        assert_eq!(required_xcr0(no_zmm_state), Ok(0x7));
    }

    #[test]
    fn each_missing_requirement_is_named() {
        let without = |leaf: u32, register: usize, bits: u32| {
            move |l: u32, s: u32| {
                let mut r = genoa(l, s);
                if l == leaf {
                    r[register] &= !bits;
                }
                r
            }
        };
        assert_eq!(required_xcr0(without(0, 0, 0x1F)), Err(Missing::Leaf0xD));
        assert_eq!(required_xcr0(without(1, 2, 1 << 25)), Err(Missing::Leaf1));
        assert_eq!(required_xcr0(without(7, 1, 1 << 5)), Err(Missing::Leaf7));
        assert_eq!(
            required_xcr0(without(0x8000_0000, 0, 0xFF)),
            Err(Missing::Extended)
        );
        assert_eq!(
            required_xcr0(without(0x8000_0001, 3, 1 << 20)),
            Err(Missing::Extended)
        );
        assert_eq!(required_xcr0(without(0xD, 0, 0x4)), Err(Missing::Xcr0));
        // A CPUID page without the leaves at all (absent leaves read as zeros).
        assert_eq!(required_xcr0(|_, _| [0; 4]), Err(Missing::Leaf0xD));
    }
}
