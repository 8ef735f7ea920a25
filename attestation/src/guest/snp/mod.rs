//! AMD SEV-SNP guest protocols.

pub mod cpuid_page;
pub mod ghcb;
pub mod ghcb_msr;
pub mod guest_message;
pub mod messages;
pub mod secrets;

/// MSR that tells which SEV features are active (read-only, set by hardware at launch).
pub const MSR_SEV_STATUS: u32 = 0xC001_0131;
/// The GHCB MSR: GHCB MSR protocol requests/responses, or the GHCB page's physical address.
pub const MSR_GHCB: u32 = 0xC001_0130;

/// `SEV_STATUS` bit 0: SEV is active.
pub const SEV_STATUS_SEV: u64 = 1 << 0;
/// `SEV_STATUS` bit 1: SEV-ES is active.
pub const SEV_STATUS_SEV_ES: u64 = 1 << 1;
/// `SEV_STATUS` bit 2: SEV-SNP is active.
pub const SEV_STATUS_SEV_SNP: u64 = 1 << 2;

/// CPUID leaf reporting the SEV capabilities and the C-bit position (EBX[5:0]).
pub const CPUID_SEV_LEAF: u32 = 0x8000_001F;

/// The C-bit position from CPUID 0x8000001F EBX, if it is one a real CPU could report.
/// Real parts use 47 or 51; anything outside [32, 63] would put the C-bit inside the
/// addressable range we map or outside a page-table entry.
pub fn c_bit_from_cpuid_ebx(ebx: u32) -> Option<u8> {
    let bit = (ebx & 0x3F) as u8;
    (32..=63).contains(&bit).then_some(bit)
}

/// What SNP detection concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpDetection {
    /// No SEV feature is active: a plain VM.
    NotSnp,
    /// SEV-SNP is active with the C-bit at this position (validated CPUID page and the
    /// hypervisor's claim agree).
    Snp { c_bit: u8 },
}

/// Why SNP detection refused to continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpDetectionError {
    /// SEV or SEV-ES without SNP: memory integrity is missing, Ward refuses to run.
    SevWithoutSnp { sev_status: u64 },
    /// The C-bit position from CPUID is not plausible.
    BadCBit { ebx: u32 },
    /// The validated CPUID page and the hypervisor disagree on the C-bit position: one of
    /// them lies, so we stop before building page tables on it.
    CBitMismatch { cpuid_page: u8, hypervisor: u8 },
}

impl core::fmt::Display for SnpDetectionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::SevWithoutSnp { sev_status } => {
                write!(
                    f,
                    "SEV active without SNP (SEV_STATUS {sev_status:#x}); refused"
                )
            }
            Self::BadCBit { ebx } => write!(f, "implausible C-bit in CPUID EBX {ebx:#x}"),
            Self::CBitMismatch {
                cpuid_page,
                hypervisor,
            } => write!(
                f,
                "C-bit position {cpuid_page} (validated CPUID page) != {hypervisor} (hypervisor)"
            ),
        }
    }
}

/// Decides from `SEV_STATUS`, the C-bit in the validated CPUID page's 0x8000001F EBX, and the
/// C-bit the hypervisor reported through the GHCB MSR protocol (SEV information response).
pub fn detect(
    sev_status: u64,
    cpuid_page_ebx: u32,
    hypervisor_c_bit: u8,
) -> Result<SnpDetection, SnpDetectionError> {
    if sev_status & (SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SEV_SNP) == 0 {
        return Ok(SnpDetection::NotSnp);
    }
    if sev_status & SEV_STATUS_SEV_SNP == 0 {
        return Err(SnpDetectionError::SevWithoutSnp { sev_status });
    }
    let c_bit = c_bit_from_cpuid_ebx(cpuid_page_ebx).ok_or(SnpDetectionError::BadCBit {
        ebx: cpuid_page_ebx,
    })?;
    if c_bit != hypervisor_c_bit {
        return Err(SnpDetectionError::CBitMismatch {
            cpuid_page: c_bit,
            hypervisor: hypervisor_c_bit,
        });
    }
    Ok(SnpDetection::Snp { c_bit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_vm_is_not_snp() {
        assert_eq!(detect(0, 0, 0), Ok(SnpDetection::NotSnp));
    }

    #[test]
    fn snp_with_agreeing_c_bit() {
        let status = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SEV_SNP;
        assert_eq!(
            detect(status, 0x0000_0173, 51),
            Ok(SnpDetection::Snp { c_bit: 51 })
        );
    }

    #[test]
    fn refusals() {
        let status = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SEV_SNP;
        assert_eq!(
            detect(status, 0x173, 47),
            Err(SnpDetectionError::CBitMismatch {
                cpuid_page: 51,
                hypervisor: 47
            })
        );
        assert_eq!(
            detect(status, 0x10, 16),
            Err(SnpDetectionError::BadCBit { ebx: 0x10 })
        );
        assert_eq!(
            detect(SEV_STATUS_SEV | SEV_STATUS_SEV_ES, 0x173, 51),
            Err(SnpDetectionError::SevWithoutSnp { sev_status: 3 })
        );
    }
}

#[cfg(test)]
pub(crate) mod simulated_psp;
