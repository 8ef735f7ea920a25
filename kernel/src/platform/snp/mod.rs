//! AMD SEV-SNP (DESIGN §5; docs/confidential-guests.md): memory encrypted and integrity
//! protected by the CPU, the hypervisor reached only through the GHCB.
//!
//! How the kernel runs on it, in order:
//! 1. [`Snp::init`], on the loader's page tables before any port I/O or CPUID (both would raise
//!    #VC with no handler yet): SEV_STATUS must report SNP; the CPUID and secrets pages the
//!    loader names are copied into private heap memory; the C-bit from the loader must match
//!    the validated CPUID page; VMPCK0 is taken from the secrets page, whose original is then
//!    wiped.
//! 2. The shared pool is made shared ([`page_state`]: PVALIDATE rescind, then page-state change
//!    through the GHCB MSR protocol) and the kernel's tables map private memory with the C-bit
//!    ([`Platform::private_pte_mask`]) and the pool and MMIO without it.
//! 3. On the kernel stack, the IDT's vector 29 points at the #VC entry (`vc.s`, its own IST
//!    stack), then [`Snp::enable_ghcb`] takes the GHCB and two message pages from the pool and
//!    registers the GHCB. From here port I/O, MMIO, MSRs and CPUID work ([`vc`]).
//! 4. Evidence: SNP_GUEST_REQUEST reports through [`guest_request`] and
//!    `ward_attestation::guest::provider::SnpEvidence` (AES-GCM with VMPCK0).
//!
//! Application processors are not started (the default `start_application_processor` refuses):
//! that needs a VMSA per AP, RMPADJUST and the GHCB AP-creation request.

#[cfg(target_os = "none")]
pub mod cpu;
pub mod ghcb_page;
#[cfg(target_os = "none")]
mod ghcb_slot;
pub mod guest_request;
#[cfg(target_os = "none")]
pub mod handler;
pub mod operand;
pub mod page_state;
pub mod vc;

use core::fmt;
use spin::Once;
use ward_attestation::guest::snp::CPUID_SEV_LEAF;
use ward_attestation::guest::snp::cpuid_page::{CpuidPageError, CpuidTable};
use ward_attestation::guest::snp::ghcb_msr::MsrProtocolError;
use ward_attestation::guest::snp::secrets::{self, SECRETS_PAGE_SIZE, SecretsError};
use zeroize::Zeroizing;

/// Why the SNP platform could not be set up or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpError {
    /// The loader said SNP, the CPU does not.
    NotActive {
        sev_status: u64,
    },
    /// The loader's C-bit mask is not one bit in 32..=63.
    BadEncryptionMask(u64),
    /// The loader named no secrets or CPUID page, or one that is not page aligned.
    MissingPage(&'static str),
    CpuidPage(CpuidPageError),
    /// The validated CPUID page has no SEV leaf (0x8000001F).
    NoSevLeaf,
    /// The loader's C-bit differs from the validated CPUID page's.
    CBitMismatch {
        loader: u32,
        cpuid_page: u32,
    },
    Secrets(SecretsError),
    /// Converting pages between private and shared failed.
    PageState(page_state::PageStateError),
    /// The hypervisor refused a GHCB MSR protocol request (features, GHCB registration).
    Hypervisor(MsrProtocolError),
    /// The shared pool has no pages for the GHCB and the message pages.
    PoolExhausted,
    /// Evidence was asked for before the GHCB exists.
    NoGhcb,
    /// The PSP's report could not be obtained (the log says why; VMPCK0 is then wiped).
    Evidence,
}

impl fmt::Display for SnpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotActive { sev_status } => {
                write!(f, "SEV_STATUS {sev_status:#x} does not report SEV-SNP")
            }
            Self::BadEncryptionMask(mask) => write!(f, "C-bit mask {mask:#x} is implausible"),
            Self::MissingPage(which) => write!(f, "no usable {which} page in the boot info"),
            Self::CpuidPage(e) => write!(f, "{e}"),
            Self::NoSevLeaf => f.write_str("the CPUID page has no leaf 0x8000001F"),
            Self::CBitMismatch { loader, cpuid_page } => write!(
                f,
                "C-bit {loader} from the loader differs from {cpuid_page} in the CPUID page"
            ),
            Self::Secrets(e) => write!(f, "secrets page: {e}"),
            Self::PageState(e) => write!(f, "{e}"),
            Self::Hypervisor(e) => write!(f, "GHCB MSR protocol: {e}"),
            Self::PoolExhausted => f.write_str("no shared pages for the GHCB"),
            Self::NoGhcb => f.write_str("no GHCB yet"),
            Self::Evidence => f.write_str("SNP_GUEST_REQUEST for a report failed"),
        }
    }
}

/// What the launch gave the guest, checked and copied out of the loader's pages.
pub struct Launch {
    /// `1 << C-bit`.
    pub c_bit_mask: u64,
    /// The validated CPUID results.
    pub cpuid: CpuidTable,
    /// VMPCK0, the key of SNP_GUEST_REQUEST messages at VMPL0.
    pub vmpck0: Zeroizing<[u8; 32]>,
}

/// Checks the loader's C-bit mask against the validated CPUID page and takes VMPCK0.
pub fn parse_launch(
    c_bit_mask: u64,
    cpuid_page: &[u8],
    secrets_page: &[u8; SECRETS_PAGE_SIZE],
) -> Result<Launch, SnpError> {
    let c_bit = c_bit_mask.trailing_zeros();
    if !c_bit_mask.is_power_of_two() || !(32..=63).contains(&c_bit) {
        return Err(SnpError::BadEncryptionMask(c_bit_mask));
    }
    let cpuid = CpuidTable::parse(cpuid_page).map_err(SnpError::CpuidPage)?;
    let sev_leaf = cpuid
        .lookup(CPUID_SEV_LEAF, 0, 0, 0)
        .ok_or(SnpError::NoSevLeaf)?;
    let page_c_bit = sev_leaf[1] & 0x3F;
    if page_c_bit != c_bit {
        return Err(SnpError::CBitMismatch {
            loader: c_bit,
            cpuid_page: page_c_bit,
        });
    }
    let vmpck0 = Zeroizing::new(secrets::vmpck(secrets_page, 0).map_err(SnpError::Secrets)?);
    Ok(Launch {
        c_bit_mask,
        cpuid,
        vmpck0,
    })
}

static CPUID_TABLE: Once<CpuidTable> = Once::new();

/// The validated CPUID table, once [`Snp::init`] copied it.
pub fn cpuid_table() -> Option<&'static CpuidTable> {
    CPUID_TABLE.get()
}

#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
pub use platform::{ConfigBindingError, Snp};

/// The #VC entry for the IDT's vector 29, once the kernel runs as an SNP guest.
#[cfg(target_os = "none")]
pub fn vc_entry_address() -> Option<u64> {
    Snp::get().map(|_| handler::entry_address())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpuid_page(sev_ebx: u32) -> [u8; 4096] {
        let mut page = [0u8; 4096];
        page[0] = 1;
        page[16..20].copy_from_slice(&CPUID_SEV_LEAF.to_le_bytes());
        page[16 + 24..16 + 28].copy_from_slice(&0x1_000Fu32.to_le_bytes());
        page[16 + 28..16 + 32].copy_from_slice(&sev_ebx.to_le_bytes());
        page
    }

    fn secrets_page() -> [u8; SECRETS_PAGE_SIZE] {
        let mut page = [0u8; SECRETS_PAGE_SIZE];
        page[0] = 3;
        page[0x20..0x40].fill(0xA5);
        page
    }

    #[test]
    fn launch_values_are_checked_against_the_validated_pages() {
        let launch = parse_launch(1 << 51, &cpuid_page(0x173), &secrets_page()).unwrap();
        assert_eq!(launch.c_bit_mask, 1 << 51);
        assert_eq!(*launch.vmpck0, [0xA5; 32]);
        assert!(launch.cpuid.lookup(CPUID_SEV_LEAF, 0, 0, 0).is_some());

        assert_eq!(
            parse_launch(1 << 47, &cpuid_page(0x173), &secrets_page()).err(),
            Some(SnpError::CBitMismatch {
                loader: 47,
                cpuid_page: 51
            })
        );
        for mask in [0, 3 << 50, 1 << 20] {
            assert_eq!(
                parse_launch(mask, &cpuid_page(0x173), &secrets_page()).err(),
                Some(SnpError::BadEncryptionMask(mask))
            );
        }
        assert_eq!(
            parse_launch(1 << 51, &[0u8; 4096], &secrets_page()).err(),
            Some(SnpError::NoSevLeaf)
        );
        let mut wiped = secrets_page();
        wiped[0x20..0x40].fill(0);
        assert_eq!(
            parse_launch(1 << 51, &cpuid_page(0x173), &wiped).err(),
            Some(SnpError::Secrets(SecretsError::KeyWiped(0)))
        );
        let mut too_many = cpuid_page(0x173);
        too_many[0] = 200;
        assert_eq!(
            parse_launch(1 << 51, &too_many, &secrets_page()).err(),
            Some(SnpError::CpuidPage(CpuidPageError::TooManyEntries(200)))
        );
    }
}
