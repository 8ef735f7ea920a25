//! Finding the CPUs: the ACPI MADT ("APIC" table) among QEMU's concatenated ACPI tables
//! (fw_cfg `etc/acpi/tables`), and the enabled local APIC / x2APIC IDs in it.
//!
//! The tables come from the host and are untrusted: every length is bounded by what is left,
//! and a malformed table is an error, never a panic or a long loop. The checksum is not
//! checked: QEMU leaves it to the firmware's table loader (an `ADD_CHECKSUM` command), so the
//! raw blob carries none, and it would prove nothing about a host-made table anyway.
//! What a lie can achieve is limited to fewer CPUs, or start-up attempts at IDs that never
//! answer (which time out).

use alloc::vec::Vec;
use core::fmt;

/// Largest MADT accepted (a 256-CPU MADT is about 4 KiB).
pub const MAX_MADT_LEN: usize = 64 << 10;
/// Most CPUs taken from the MADT.
pub const MAX_APIC_IDS: usize = crate::arch::paging::layout::MAX_CPUS;

const HEADER_LEN: usize = 36;
const MADT_ENTRIES_OFFSET: usize = 44;
const ENTRY_LOCAL_APIC: u8 = 0;
const ENTRY_LOCAL_X2APIC: u8 = 9;
const FLAG_ENABLED: u32 = 1;

/// A sequential byte source (fw_cfg's data port).
pub trait ByteSource {
    /// Fills `buffer` with the next bytes.
    fn read(&mut self, buffer: &mut [u8]);
}

/// Why no CPU list could be taken from the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// A table header claims a length below its header or past the end of the blob.
    BadTableLength {
        /// Offset of the table in the blob.
        offset: usize,
        /// The length it claims.
        length: u32,
    },
    /// No "APIC" table in the blob.
    NotFound,
    /// The MADT is larger than [`MAX_MADT_LEN`].
    TooLarge(u32),
    /// An entry is shorter than its type requires or runs past the table.
    BadEntry {
        /// Offset of the entry in the MADT.
        offset: usize,
    },
}

impl fmt::Display for MadtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadTableLength { offset, length } => {
                write!(f, "ACPI table at offset {offset} claims {length} bytes")
            }
            Self::NotFound => f.write_str("no MADT among the ACPI tables"),
            Self::TooLarge(length) => write!(f, "MADT of {length} bytes is too large"),
            Self::BadEntry { offset } => write!(f, "malformed MADT entry at offset {offset}"),
        }
    }
}

/// Reads the concatenated tables from `source` (`total` bytes) until the one whose signature is
/// `signature`, and returns it whole. Zero padding after the last table ends the walk.
pub fn find_table(
    source: &mut impl ByteSource,
    total: usize,
    signature: &[u8; 4],
) -> Result<Vec<u8>, MadtError> {
    let mut offset = 0;
    let mut scratch = [0u8; 512];
    while offset + 8 <= total {
        let mut head = [0u8; 8];
        source.read(&mut head);
        let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if head[..4] == [0; 4] {
            break;
        }
        let bad = MadtError::BadTableLength { offset, length };
        let body = (length as usize).checked_sub(8).ok_or(bad)?;
        if body > total - offset - 8 {
            return Err(bad);
        }
        if &head[..4] == signature {
            if length as usize > MAX_MADT_LEN {
                return Err(MadtError::TooLarge(length));
            }
            let mut table = Vec::with_capacity(length as usize);
            table.extend_from_slice(&head);
            table.resize(length as usize, 0);
            source.read(&mut table[8..]);
            return Ok(table);
        }
        let mut left = body;
        while left > 0 {
            let n = left.min(scratch.len());
            source.read(&mut scratch[..n]);
            left -= n;
        }
        offset += length as usize;
    }
    Err(MadtError::NotFound)
}

/// The enabled processors' APIC IDs in the MADT, in table order, without duplicates, at most
/// [`MAX_APIC_IDS`]. "Online capable" but disabled entries (hot-plug slots) are left out.
pub fn enabled_apic_ids(madt: &[u8]) -> Result<Vec<u32>, MadtError> {
    if madt.len() < MADT_ENTRIES_OFFSET {
        return Err(MadtError::BadEntry { offset: 0 });
    }
    let declared = u32::from_le_bytes([madt[4], madt[5], madt[6], madt[7]]) as usize;
    let madt = madt.get(..declared.max(HEADER_LEN)).unwrap_or(madt);
    let mut ids = Vec::new();
    let mut offset = MADT_ENTRIES_OFFSET;
    while offset < madt.len() {
        let bad = MadtError::BadEntry { offset };
        let header = madt.get(offset..offset + 2).ok_or(bad)?;
        let (kind, length) = (header[0], usize::from(header[1]));
        if length < 2 {
            return Err(bad);
        }
        let entry = madt.get(offset..offset + length).ok_or(bad)?;
        let word = |at: usize| -> Result<u32, MadtError> {
            let bytes = entry.get(at..at + 4).ok_or(bad)?;
            Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        let found = match kind {
            ENTRY_LOCAL_APIC => {
                let id = u32::from(*entry.get(3).ok_or(bad)?);
                Some((id, word(4)?))
            }
            ENTRY_LOCAL_X2APIC => Some((word(4)?, word(8)?)),
            _ => None,
        };
        if let Some((id, flags)) = found
            && flags & FLAG_ENABLED != 0
            && !ids.contains(&id)
            && ids.len() < MAX_APIC_IDS
        {
            ids.push(id);
        }
        offset += length;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slice<'a>(&'a [u8]);

    impl ByteSource for Slice<'_> {
        fn read(&mut self, buffer: &mut [u8]) {
            let n = buffer.len().min(self.0.len());
            buffer[..n].copy_from_slice(&self.0[..n]);
            buffer[n..].fill(0);
            self.0 = &self.0[n..];
        }
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(signature);
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.resize(HEADER_LEN, 0);
        t.extend_from_slice(body);
        // Checksum left 0, as in QEMU's blob before the firmware's table loader runs.
        t
    }

    fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"APIC", &body)
    }

    fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![ENTRY_LOCAL_APIC, 8, uid, id];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    fn x2apic(id: u32, flags: u32) -> Vec<u8> {
        let mut e = vec![ENTRY_LOCAL_X2APIC, 16, 0, 0];
        e.extend_from_slice(&id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&7u32.to_le_bytes());
        e
    }

    fn io_apic() -> Vec<u8> {
        vec![1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]
    }

    #[test]
    fn finds_the_madt_after_other_tables_like_qemus_blob() {
        let facs = {
            let mut f = b"FACS".to_vec();
            f.extend_from_slice(&64u32.to_le_bytes());
            f.resize(64, 0);
            f
        };
        let dsdt = table(b"DSDT", &[0x5b; 5000]);
        let apic = madt(&[lapic(0, 0, 1), lapic(1, 1, 1), io_apic()]);
        let mut blob = [facs, dsdt, table(b"FACP", &[1; 208]), apic.clone()].concat();
        blob.extend_from_slice(&[0; 4096]);
        let found = find_table(&mut Slice(&blob), blob.len(), b"APIC").unwrap();
        assert_eq!(found, apic);
        assert_eq!(enabled_apic_ids(&found).unwrap(), [0, 1]);
        assert_eq!(
            find_table(&mut Slice(&blob), blob.len(), b"SRAT"),
            Err(MadtError::NotFound)
        );
    }

    #[test]
    fn enabled_ids_only_without_duplicates_and_x2apic_entries() {
        let m = madt(&[
            lapic(0, 0, 1),
            lapic(1, 2, 1),
            lapic(2, 4, 0b10), // online capable, not enabled: a hot-plug slot
            lapic(3, 2, 1),    // duplicate
            io_apic(),
            x2apic(300, 1),
            x2apic(301, 0),
        ]);
        assert_eq!(enabled_apic_ids(&m).unwrap(), [0, 2, 300]);
    }

    #[test]
    fn hostile_tables_are_errors() {
        // An entry of length 0 would loop forever; one running past the end reads nothing.
        let zero = madt(&[vec![0, 0, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(
            enabled_apic_ids(&zero),
            Err(MadtError::BadEntry { offset: 44 })
        );
        let long = madt(&[vec![ENTRY_LOCAL_APIC, 40, 0, 1, 1, 0, 0, 0]]);
        assert_eq!(
            enabled_apic_ids(&long),
            Err(MadtError::BadEntry { offset: 44 })
        );
        let short_x2 = madt(&[vec![ENTRY_LOCAL_X2APIC, 6, 0, 0, 1, 0]]);
        assert!(enabled_apic_ids(&short_x2).is_err());
        assert!(enabled_apic_ids(&[0; 10]).is_err());
        // A table claiming more than the blob holds, or less than its header.
        let mut blob = table(b"DSDT", &[0; 100]);
        blob[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            find_table(&mut Slice(&blob), blob.len(), b"APIC"),
            Err(MadtError::BadTableLength { offset: 0, .. })
        ));
        blob[4..8].copy_from_slice(&4u32.to_le_bytes());
        assert!(find_table(&mut Slice(&blob), blob.len(), b"APIC").is_err());
        // Too many CPUs are cut at the limit.
        let many: Vec<Vec<u8>> = (0..MAX_APIC_IDS as u32 + 10)
            .map(|i| x2apic(i, 1))
            .collect();
        assert_eq!(enabled_apic_ids(&madt(&many)).unwrap().len(), MAX_APIC_IDS);
    }
}
