//! The metadata at the end of an OVMF-format firmware image, which QEMU, the SNP and TDX launch
//! tools and Ward's loader agree on:
//!
//! - the GUID table: it ends 32 bytes before the end of the image with a footer entry; each
//!   entry is `data, u16 size, GUID` and entries are read backwards from the footer;
//! - the SEV-ES reset block entry: the real-mode entry point of application processors;
//! - the SEV metadata entry: offset (from the end of the image) of an "ASEV" header listing the
//!   pages the SNP launch adds besides the image (zeroed memory, secrets page, CPUID page);
//! - the TDX metadata entry: offset of a "TDVF" descriptor listing the sections the TDX launch
//!   adds, with the image bytes they come from.

use super::MeasureError;
use alloc::vec::Vec;

/// A GUID as it is stored in firmware (mixed-endian "bytes_le" form).
pub type Guid = [u8; 16];

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// 96b582de-1fb2-45f7-baea-a366c55a082d
pub const FOOTER_GUID: Guid = guid(
    0x96b582de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// 00f771de-1a7e-4fcb-890e-68c77e2fb44e
pub const SEV_ES_RESET_BLOCK_GUID: Guid = guid(
    0x00f771de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// dc886566-984a-4798-a75e-5585a7bf67cc
pub const SEV_METADATA_GUID: Guid = guid(
    0xdc886566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// e47a6535-984a-4798-865e-4685a7bf8ec2
pub const TDX_METADATA_GUID: Guid = guid(
    0xe47a6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

const ENTRY_HEADER: usize = 2 + 16;
/// The footer entry sits this many bytes before the end of the image (the reset vector and
/// padding follow it).
const FOOTER_DISTANCE_FROM_END: usize = 32;
const FOUR_GIB: u64 = 1 << 32;

/// A firmware image with its GUID table parsed.
pub struct Firmware<'a> {
    image: &'a [u8],
    entries: Vec<(Guid, &'a [u8])>,
}

impl<'a> Firmware<'a> {
    /// Parses the GUID table at the end of `image`.
    pub fn parse(image: &'a [u8]) -> Result<Self, MeasureError> {
        let footer_at = image
            .len()
            .checked_sub(FOOTER_DISTANCE_FROM_END + ENTRY_HEADER)
            .ok_or(MeasureError::NoGuidTable)?;
        let footer = &image[footer_at..footer_at + ENTRY_HEADER];
        if footer[2..] != FOOTER_GUID {
            return Err(MeasureError::NoGuidTable);
        }
        let table_size = usize::from(u16::from_le_bytes([footer[0], footer[1]]))
            .checked_sub(ENTRY_HEADER)
            .ok_or(MeasureError::BadGuidTable(
                "footer size smaller than its header",
            ))?;
        let table_start = footer_at
            .checked_sub(table_size)
            .ok_or(MeasureError::BadGuidTable("table extends before the image"))?;
        let mut table = &image[table_start..footer_at];
        let mut entries = Vec::new();
        while table.len() >= ENTRY_HEADER {
            let header = &table[table.len() - ENTRY_HEADER..];
            let size = usize::from(u16::from_le_bytes([header[0], header[1]]));
            if size < ENTRY_HEADER || size > table.len() {
                return Err(MeasureError::BadGuidTable("entry size out of bounds"));
            }
            let mut id = [0u8; 16];
            id.copy_from_slice(&header[2..]);
            let data = &table[table.len() - size..table.len() - ENTRY_HEADER];
            entries.push((id, data));
            table = &table[..table.len() - size];
        }
        Ok(Self { image, entries })
    }

    pub fn image(&self) -> &'a [u8] {
        self.image
    }

    /// Guest physical address of the image's first byte: the image ends at 4 GiB.
    pub fn gpa(&self) -> Result<u64, MeasureError> {
        let len = self.image.len() as u64;
        if !len.is_multiple_of(super::PAGE_SIZE) || len > FOUR_GIB {
            return Err(MeasureError::BadImageSize(self.image.len()));
        }
        Ok(FOUR_GIB - len)
    }

    /// The data of the entry with `id`, if the table has one.
    pub fn entry(&self, id: &Guid) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|(g, _)| g == id)
            .map(|(_, data)| *data)
    }

    fn entry_u32(&self, id: &Guid, name: &'static str) -> Result<u32, MeasureError> {
        let data = self.entry(id).ok_or(MeasureError::MissingEntry(name))?;
        let bytes = data
            .get(..4)
            .ok_or(MeasureError::BadGuidTable("entry shorter than 4 bytes"))?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The real-mode entry point of application processors (SEV-ES reset block).
    pub fn sev_es_reset_eip(&self) -> Result<u32, MeasureError> {
        self.entry_u32(&SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")
    }

    /// The bytes of a metadata block whose offset from the end of the image the entry `id`
    /// holds, checked to lie inside the image.
    fn metadata_block(
        &self,
        id: &Guid,
        which: &'static str,
        signature: &[u8; 4],
        entry_size: usize,
    ) -> Result<Option<(&'a [u8], usize)>, MeasureError> {
        if self.entry(id).is_none() {
            return Ok(None);
        }
        let bad = |reason| MeasureError::BadMetadata { which, reason };
        let offset_from_end = self.entry_u32(id, which)? as usize;
        let start = self
            .image
            .len()
            .checked_sub(offset_from_end)
            .ok_or(bad("offset before the start of the image"))?;
        let header = self
            .image
            .get(start..start + 16)
            .ok_or(bad("header past the end"))?;
        if header[..4] != signature[..] {
            return Err(bad("wrong signature"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (length, version, count) = (word(4) as usize, word(8), word(12) as usize);
        if version != 1 {
            return Err(bad("version is not 1"));
        }
        let needed = count
            .checked_mul(entry_size)
            .and_then(|n| n.checked_add(16))
            .ok_or(bad("too many entries"))?;
        if needed > length {
            return Err(bad("entries do not fit in the declared length"));
        }
        let block = self
            .image
            .get(start..start + length)
            .ok_or(bad("block past the end"))?;
        Ok(Some((&block[16..needed], count)))
    }

    /// The SNP metadata sections ("ASEV"); empty when the image has none.
    pub fn sev_sections(&self) -> Result<Vec<SevSection>, MeasureError> {
        let Some((items, _)) = self.metadata_block(&SEV_METADATA_GUID, "ASEV", b"ASEV", 12)? else {
            return Ok(Vec::new());
        };
        items
            .chunks_exact(12)
            .map(|item| {
                let word = |at: usize| {
                    u32::from_le_bytes([item[at], item[at + 1], item[at + 2], item[at + 3]])
                };
                let kind = SevSectionKind::from_u32(word(8)).ok_or(MeasureError::BadMetadata {
                    which: "ASEV",
                    reason: "unknown section type",
                })?;
                Ok(SevSection {
                    gpa: word(0).into(),
                    size: word(4).into(),
                    kind,
                })
            })
            .collect()
    }

    /// The TDX metadata sections ("TDVF"); empty when the image has none.
    pub fn tdvf_sections(&self) -> Result<Vec<TdvfSection>, MeasureError> {
        let Some((items, _)) = self.metadata_block(&TDX_METADATA_GUID, "TDVF", b"TDVF", 32)? else {
            return Ok(Vec::new());
        };
        items
            .chunks_exact(32)
            .map(|item| TdvfSection::parse(item, self.image.len()))
            .collect()
    }
}

/// What an ASEV section asks the SNP launch to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevSectionKind {
    /// Memory the firmware expects pre-validated and zeroed.
    SnpSecMem,
    /// The SNP secrets page (VMPCKs).
    SnpSecrets,
    /// The CPUID page the PSP validates.
    Cpuid,
    /// The SVSM calling area.
    SvsmCaa,
    /// OVMF's kernel-hashes table page (zeroed when no kernel is passed, as for Ward).
    KernelHashes,
}

impl SevSectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::SnpSecMem),
            2 => Some(Self::SnpSecrets),
            3 => Some(Self::Cpuid),
            4 => Some(Self::SvsmCaa),
            0x10 => Some(Self::KernelHashes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSection {
    pub gpa: u64,
    pub size: u64,
    pub kind: SevSectionKind,
}

/// TDVF section types (TDVF design guide, "TDVF_SECTION").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdvfSectionKind {
    /// Boot firmware volume: the code.
    Bfv,
    /// Configuration firmware volume.
    Cfv,
    TdHob,
    TempMem,
    PermMem,
    Payload,
    PayloadParam,
}

impl TdvfSectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Bfv),
            1 => Some(Self::Cfv),
            2 => Some(Self::TdHob),
            3 => Some(Self::TempMem),
            4 => Some(Self::PermMem),
            5 => Some(Self::Payload),
            6 => Some(Self::PayloadParam),
            _ => None,
        }
    }
}

/// Section attribute: the content is measured into MRTD with `TDH.MR.EXTEND`.
pub const TDVF_ATTRIBUTE_MR_EXTEND: u32 = 1 << 0;
/// Section attribute: the pages are added after launch (`TDH.MEM.PAGE.AUG`), unmeasured.
pub const TDVF_ATTRIBUTE_PAGE_AUG: u32 = 1 << 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset and length of the section's initial content in the image.
    pub data_offset: u32,
    pub raw_data_size: u32,
    pub memory_address: u64,
    pub memory_data_size: u64,
    pub kind: TdvfSectionKind,
    pub attributes: u32,
}

impl TdvfSection {
    fn parse(item: &[u8], image_len: usize) -> Result<Self, MeasureError> {
        let bad = |reason| MeasureError::BadMetadata {
            which: "TDVF",
            reason,
        };
        let u32_at =
            |at: usize| u32::from_le_bytes([item[at], item[at + 1], item[at + 2], item[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
        let section = Self {
            data_offset: u32_at(0),
            raw_data_size: u32_at(4),
            memory_address: u64_at(8),
            memory_data_size: u64_at(16),
            kind: TdvfSectionKind::from_u32(u32_at(24)).ok_or(bad("unknown section type"))?,
            attributes: u32_at(28),
        };
        let page = super::PAGE_SIZE;
        if !section.memory_address.is_multiple_of(page)
            || !section.memory_data_size.is_multiple_of(page)
        {
            return Err(bad("section not page aligned"));
        }
        if section.memory_data_size == 0 {
            return Err(bad("empty section"));
        }
        if u64::from(section.raw_data_size) > section.memory_data_size {
            return Err(bad("raw data larger than the section"));
        }
        let data_end = u64::from(section.data_offset) + u64::from(section.raw_data_size);
        if data_end > image_len as u64 {
            return Err(bad("section data past the end of the image"));
        }
        if section.attributes & !(TDVF_ATTRIBUTE_MR_EXTEND | TDVF_ATTRIBUTE_PAGE_AUG) != 0 {
            return Err(bad("unknown section attribute"));
        }
        Ok(section)
    }

    /// The section's initial content from the image (zero-extended to its memory size by the
    /// caller).
    pub fn raw_data<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        let start = self.data_offset as usize;
        &image[start..start + self.raw_data_size as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_mixed_endian() {
        assert_eq!(
            FOOTER_GUID,
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
    }

    #[test]
    fn images_without_a_table_are_refused() {
        assert!(matches!(
            Firmware::parse(&[0u8; 4096]),
            Err(MeasureError::NoGuidTable)
        ));
        assert!(matches!(
            Firmware::parse(&[0u8; 10]),
            Err(MeasureError::NoGuidTable)
        ));
    }

    #[test]
    fn oversized_entries_are_refused() {
        let mut image = [0u8; 4096];
        let footer_at = 4096 - 32 - 18;
        image[footer_at..footer_at + 2].copy_from_slice(&(18u16 + 18).to_le_bytes());
        image[footer_at + 2..footer_at + 18].copy_from_slice(&FOOTER_GUID);
        // One 18-byte entry claiming 200 bytes.
        image[footer_at - 18..footer_at - 16].copy_from_slice(&200u16.to_le_bytes());
        assert!(matches!(
            Firmware::parse(&image),
            Err(MeasureError::BadGuidTable(_))
        ));
    }
}
