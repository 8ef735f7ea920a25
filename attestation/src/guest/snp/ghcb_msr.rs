//! The GHCB MSR protocol (GHCB spec 56421 §2.3.1): requests a guest can make by writing the
//! GHCB MSR and executing VMGEXIT before it has a GHCB page. Bits [11:0] of the MSR value name
//! the request or response (GHCBInfo); the rest carries data.
//!
//! Every response comes from the hypervisor and is checked here: its GHCBInfo must be the one
//! that answers our request, and its data must be well formed.

use core::fmt;

const INFO_MASK: u64 = 0xFFF;

const SEV_INFO_RESPONSE: u64 = 0x001;
const SEV_INFO_REQUEST: u64 = 0x002;
const CPUID_REQUEST: u64 = 0x004;
const CPUID_RESPONSE: u64 = 0x005;
const REGISTER_GHCB_REQUEST: u64 = 0x012;
const REGISTER_GHCB_RESPONSE: u64 = 0x013;
const PAGE_STATE_REQUEST: u64 = 0x014;
const PAGE_STATE_RESPONSE: u64 = 0x015;
const HV_FEATURES_REQUEST: u64 = 0x080;
const HV_FEATURES_RESPONSE: u64 = 0x081;
const TERMINATE_REQUEST: u64 = 0x100;

/// The GHCB protocol version Ward speaks (2 is the first version with SNP requests).
pub const PROTOCOL_VERSION: u16 = 2;

/// Hypervisor feature bit 0: SEV-SNP supported.
pub const HV_FEATURE_SNP: u64 = 1 << 0;

/// A CPUID output register the MSR protocol can return (one per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidRegister {
    Eax = 0,
    Ebx = 1,
    Ecx = 2,
    Edx = 3,
}

/// Page states for the MSR-protocol page-state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// Assigned to the guest, encrypted with its key.
    Private = 1,
    /// Host-visible.
    Shared = 2,
}

/// Reason code set 0 (GHCB spec §4.1.13) codes Ward uses when it terminates itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationReason {
    /// General termination request.
    General = 0,
    /// The GHCB protocol range is not supported.
    UnsupportedProtocol = 1,
    /// SEV-SNP features not supported by the hypervisor.
    SnpUnsupported = 2,
}

/// A malformed or unexpected hypervisor response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrProtocolError {
    /// The response's GHCBInfo does not answer the request we made.
    UnexpectedResponse { expected: u16, got: u64 },
    /// The hypervisor's protocol range does not include [`PROTOCOL_VERSION`].
    UnsupportedVersion { min: u16, max: u16 },
    /// The hypervisor registered a different GHCB page than the one we asked for.
    GhcbNotRegistered { asked: u64, got: u64 },
    /// The page-state change was refused (the error code the hypervisor gave).
    PageStateRefused { code: u32 },
    /// The hypervisor does not support SEV-SNP.
    SnpNotSupported,
    /// A GFN does not fit the request's field.
    BadFrame(u64),
}

impl fmt::Display for MsrProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedResponse { expected, got } => {
                write!(
                    f,
                    "GHCB MSR response {got:#x} does not answer request {expected:#x}"
                )
            }
            Self::UnsupportedVersion { min, max } => write!(
                f,
                "hypervisor GHCB protocol {min}..={max} excludes version {PROTOCOL_VERSION}"
            ),
            Self::GhcbNotRegistered { asked, got } => {
                write!(
                    f,
                    "GHCB registration for GFN {asked:#x} answered with {got:#x}"
                )
            }
            Self::PageStateRefused { code } => write!(f, "page-state change refused ({code:#x})"),
            Self::SnpNotSupported => f.write_str("hypervisor does not support SEV-SNP"),
            Self::BadFrame(gfn) => write!(f, "frame number {gfn:#x} does not fit"),
        }
    }
}

fn expect(value: u64, response: u64) -> Result<u64, MsrProtocolError> {
    if value & INFO_MASK == response {
        Ok(value)
    } else {
        Err(MsrProtocolError::UnexpectedResponse {
            expected: response as u16,
            got: value,
        })
    }
}

/// The SEV information request.
pub const fn sev_info_request() -> u64 {
    SEV_INFO_REQUEST
}

/// The hypervisor's SEV information: its protocol range and its claim of the C-bit position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    pub min_version: u16,
    pub max_version: u16,
    pub c_bit: u8,
}

/// Decodes the SEV information response and checks that [`PROTOCOL_VERSION`] is in range.
pub fn decode_sev_info(value: u64) -> Result<SevInfo, MsrProtocolError> {
    let value = expect(value, SEV_INFO_RESPONSE)?;
    let info = SevInfo {
        max_version: (value >> 48) as u16,
        min_version: (value >> 32) as u16,
        c_bit: (value >> 24) as u8,
    };
    if info.min_version > PROTOCOL_VERSION || info.max_version < PROTOCOL_VERSION {
        return Err(MsrProtocolError::UnsupportedVersion {
            min: info.min_version,
            max: info.max_version,
        });
    }
    Ok(info)
}

/// A CPUID request for one register of leaf `function` (the MSR protocol has no sub-leaf:
/// only usable for leaves without one, and only for values checked against the CPUID page).
pub const fn cpuid_request(function: u32, register: CpuidRegister) -> u64 {
    ((function as u64) << 32) | ((register as u64) << 30) | CPUID_REQUEST
}

/// Decodes a CPUID response to [`cpuid_request`]; the value is host-provided and untrusted.
pub fn decode_cpuid_response(value: u64) -> Result<u32, MsrProtocolError> {
    Ok((expect(value, CPUID_RESPONSE)? >> 32) as u32)
}

/// The hypervisor-features request.
pub const fn hv_features_request() -> u64 {
    HV_FEATURES_REQUEST
}

/// Decodes the hypervisor-features response and requires SEV-SNP support.
pub fn decode_hv_features(value: u64) -> Result<u64, MsrProtocolError> {
    let features = expect(value, HV_FEATURES_RESPONSE)? >> 12;
    if features & HV_FEATURE_SNP == 0 {
        return Err(MsrProtocolError::SnpNotSupported);
    }
    Ok(features)
}

const GFN_LIMIT: u64 = 1 << 40;

/// Registers the GHCB at guest frame `gfn` (required under SNP before the GHCB is used).
pub fn register_ghcb_request(gfn: u64) -> Result<u64, MsrProtocolError> {
    if gfn >= (1 << 52) {
        return Err(MsrProtocolError::BadFrame(gfn));
    }
    Ok((gfn << 12) | REGISTER_GHCB_REQUEST)
}

/// Checks the hypervisor registered exactly `gfn`.
pub fn check_register_ghcb(value: u64, gfn: u64) -> Result<(), MsrProtocolError> {
    let got = expect(value, REGISTER_GHCB_RESPONSE)? >> 12;
    if got != gfn {
        return Err(MsrProtocolError::GhcbNotRegistered { asked: gfn, got });
    }
    Ok(())
}

/// A page-state change of one 4 KiB page (guest frame `gfn`, 40 bits) to `state`.
pub fn page_state_request(gfn: u64, state: PageState) -> Result<u64, MsrProtocolError> {
    if gfn >= GFN_LIMIT {
        return Err(MsrProtocolError::BadFrame(gfn));
    }
    Ok(((state as u64) << 52) | (gfn << 12) | PAGE_STATE_REQUEST)
}

/// Checks a page-state change response: error code (bits 63:32) zero.
pub fn check_page_state_response(value: u64) -> Result<(), MsrProtocolError> {
    let code = (expect(value, PAGE_STATE_RESPONSE)? >> 32) as u32;
    if code != 0 {
        return Err(MsrProtocolError::PageStateRefused { code });
    }
    Ok(())
}

/// Asks the hypervisor to terminate the guest (reason set 0, `reason`); never answered.
pub const fn termination_request(reason: TerminationReason) -> u64 {
    ((reason as u64) << 16) | TERMINATE_REQUEST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sev_info_decodes_range_and_c_bit() {
        // max 2, min 1, C-bit 51.
        let v = (2u64 << 48) | (1 << 32) | (51 << 24) | 0x001;
        assert_eq!(
            decode_sev_info(v),
            Ok(SevInfo {
                min_version: 1,
                max_version: 2,
                c_bit: 51
            })
        );
        let old = (1u64 << 48) | (1 << 32) | (51 << 24) | 0x001;
        assert_eq!(
            decode_sev_info(old),
            Err(MsrProtocolError::UnsupportedVersion { min: 1, max: 1 })
        );
        assert!(matches!(
            decode_sev_info(v & !0xFFF | 0x005),
            Err(MsrProtocolError::UnexpectedResponse { expected: 1, .. })
        ));
    }

    #[test]
    fn cpuid_request_layout() {
        assert_eq!(
            cpuid_request(0x8000_001F, CpuidRegister::Ebx),
            0x8000_001F_4000_0004
        );
        assert_eq!(cpuid_request(1, CpuidRegister::Edx), 0x0000_0001_C000_0004);
        assert_eq!(decode_cpuid_response(0x0000_0173_4000_0005), Ok(0x173));
        assert!(decode_cpuid_response(0x0000_0173_4000_0004).is_err());
    }

    #[test]
    fn ghcb_registration() {
        assert_eq!(register_ghcb_request(0x105), Ok(0x105_012));
        assert_eq!(check_register_ghcb(0x105_013, 0x105), Ok(()));
        assert_eq!(
            check_register_ghcb(0xFFFF_FFFF_FFFF_F013, 0x105),
            Err(MsrProtocolError::GhcbNotRegistered {
                asked: 0x105,
                got: 0xF_FFFF_FFFF_FFFF
            })
        );
        assert_eq!(
            register_ghcb_request(1 << 52),
            Err(MsrProtocolError::BadFrame(1 << 52))
        );
    }

    #[test]
    fn page_state_change_layout() {
        assert_eq!(
            page_state_request(0x1234, PageState::Shared),
            Ok(0x0020_0000_0123_4014)
        );
        assert_eq!(
            page_state_request(0x1234, PageState::Private),
            Ok(0x0010_0000_0123_4014)
        );
        assert_eq!(
            page_state_request(1 << 40, PageState::Shared),
            Err(MsrProtocolError::BadFrame(1 << 40))
        );
        assert_eq!(check_page_state_response(0x015), Ok(()));
        assert_eq!(
            check_page_state_response(0x0000_0007_0000_0015),
            Err(MsrProtocolError::PageStateRefused { code: 7 })
        );
    }

    #[test]
    fn hv_features_and_termination() {
        assert_eq!(decode_hv_features((0b11 << 12) | 0x081), Ok(0b11));
        assert_eq!(
            decode_hv_features((0b10 << 12) | 0x081),
            Err(MsrProtocolError::SnpNotSupported)
        );
        assert_eq!(
            termination_request(TerminationReason::SnpUnsupported),
            0x0002_0100
        );
        assert_eq!(sev_info_request(), 0x002);
        assert_eq!(hv_features_request(), 0x080);
    }
}
