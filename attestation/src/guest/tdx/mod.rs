//! Intel TDX guest interfaces: TDCALL leaves (TDX Module ABI), TDVMCALL sub-functions (GHCI),
//! #VE decoding, RTMR extension and the GetQuote buffer.

pub mod getquote;
pub mod rtmr;
pub mod tdcall;
pub mod tdvmcall;
pub mod ve;

/// CPUID leaf 0x21 sub-leaf 0 answers EBX:EDX:ECX = "IntelTDX    " inside a TD.
pub const CPUID_TDX_LEAF: u32 = 0x21;

/// Whether CPUID leaf 0x21's EBX, ECX, EDX spell the TDX vendor string (the hypervisor cannot
/// fake this: the TDX module answers leaf 0x21 itself).
pub fn is_tdx_signature(ebx: u32, ecx: u32, edx: u32) -> bool {
    let mut s = [0u8; 12];
    s[0..4].copy_from_slice(&ebx.to_le_bytes());
    s[4..8].copy_from_slice(&edx.to_le_bytes());
    s[8..12].copy_from_slice(&ecx.to_le_bytes());
    &s == b"IntelTDX    "
}

#[cfg(test)]
mod tests {
    #[test]
    fn tdx_signature() {
        let ebx = u32::from_le_bytes(*b"Inte");
        let edx = u32::from_le_bytes(*b"lTDX");
        let ecx = u32::from_le_bytes(*b"    ");
        assert!(super::is_tdx_signature(ebx, ecx, edx));
        assert!(!super::is_tdx_signature(ebx, edx, ecx));
        assert!(!super::is_tdx_signature(0, 0, 0));
    }
}
