//! The SNP secrets page (Firmware ABI 56860, "Secrets Page Format"): placed by the PSP at the
//! GPA the ASEV metadata names, private to the guest, holding the VM platform communication
//! keys (VMPCK0–3) that encrypt SNP_GUEST_REQUEST messages.

use core::fmt;

pub const SECRETS_PAGE_SIZE: usize = 4096;
const VERSION: usize = 0x000;
const VMPCK0: usize = 0x020;
/// Length of one VMPCK (AES-256).
pub const VMPCK_LEN: usize = 32;
/// Secrets-page versions this code understands (2: Genoa-era firmware; 3 adds fields after
/// 0x160 that Ward does not read).
const KNOWN_VERSIONS: [u32; 2] = [2, 3];

/// A malformed secrets page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretsError {
    UnknownVersion(u32),
    /// The VMPCK index is not 0..=3.
    NoSuchKey(u8),
    /// The key is all zeros: never installed, or already wiped after a failure.
    KeyWiped(u8),
}

impl fmt::Display for SecretsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVersion(v) => write!(f, "unknown secrets page version {v}"),
            Self::NoSuchKey(i) => write!(f, "no VMPCK{i}"),
            Self::KeyWiped(i) => write!(f, "VMPCK{i} is zero (wiped or never installed)"),
        }
    }
}

fn key_offset(index: u8) -> Result<usize, SecretsError> {
    if index > 3 {
        return Err(SecretsError::NoSuchKey(index));
    }
    Ok(VMPCK0 + usize::from(index) * VMPCK_LEN)
}

/// Reads VMPCK`index` from the secrets page.
pub fn vmpck(page: &[u8; SECRETS_PAGE_SIZE], index: u8) -> Result<[u8; VMPCK_LEN], SecretsError> {
    let version = u32::from_le_bytes([
        page[VERSION],
        page[VERSION + 1],
        page[VERSION + 2],
        page[VERSION + 3],
    ]);
    if !KNOWN_VERSIONS.contains(&version) {
        return Err(SecretsError::UnknownVersion(version));
    }
    let at = key_offset(index)?;
    let mut key = [0u8; VMPCK_LEN];
    key.copy_from_slice(&page[at..at + VMPCK_LEN]);
    if key.iter().all(|&b| b == 0) {
        return Err(SecretsError::KeyWiped(index));
    }
    Ok(key)
}

/// Overwrites VMPCK`index` in the secrets page with zeros so no later code can use it (after
/// any guest-message failure: the sequence number state is then unknown and an IV might repeat).
pub fn wipe_vmpck(page: &mut [u8; SECRETS_PAGE_SIZE], index: u8) -> Result<(), SecretsError> {
    let at = key_offset(index)?;
    zeroize::Zeroize::zeroize(&mut page[at..at + VMPCK_LEN]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_wipes_vmpck0() {
        let mut page = [0u8; SECRETS_PAGE_SIZE];
        page[0] = 3;
        page[0x20..0x40].fill(0x5A);
        page[0x40..0x60].fill(0x11);
        assert_eq!(vmpck(&page, 0), Ok([0x5A; 32]));
        assert_eq!(vmpck(&page, 1), Ok([0x11; 32]));
        wipe_vmpck(&mut page, 0).unwrap();
        assert_eq!(vmpck(&page, 0), Err(SecretsError::KeyWiped(0)));
        assert_eq!(vmpck(&page, 1), Ok([0x11; 32]));
        assert_eq!(vmpck(&page, 4), Err(SecretsError::NoSuchKey(4)));
        page[0] = 9;
        assert_eq!(vmpck(&page, 1), Err(SecretsError::UnknownVersion(9)));
    }
}
