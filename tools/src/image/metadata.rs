//! SEV ("ASEV") and TDX ("TDVF") metadata: which guest-physical ranges the hypervisor must
//! prepare before the first instruction, in the formats OVMF defines (OvmfSevMetadata.asm,
//! IntelTdxMetadata.asm) and QEMU, `sev-snp-measure` and TDX tooling read.
//!
//! Ward's sections cover the loader's working area `[1 MiB, 2 MiB)` (ward_loader::layout): under
//! SNP it is pre-validated except the secrets and CPUID pages; under TDX it is added as temporary
//! memory except the TD HOB, and the whole image is the measured boot firmware volume.

use ward_loader::layout;

/// "ASEV" metadata version.
pub const SEV_METADATA_VERSION: u32 = 1;
/// "TDVF" metadata version.
pub const TDX_METADATA_VERSION: u32 = 1;

/// SEV section: memory the hypervisor pre-validates (zero pages, measured).
pub const SEV_SECTION_SNP_SEC_MEM: u32 = 1;
/// SEV section: the SNP secrets page.
pub const SEV_SECTION_SNP_SECRETS: u32 = 2;
/// SEV section: the CPUID page.
pub const SEV_SECTION_CPUID: u32 = 3;

/// TDX section: boot firmware volume (measured into MRTD).
pub const TDX_SECTION_BFV: u32 = 0;
/// TDX section: the TD HOB the VMM fills.
pub const TDX_SECTION_TD_HOB: u32 = 2;
/// TDX section: temporary memory added (zeroed, unmeasured) before launch.
pub const TDX_SECTION_TEMP_MEM: u32 = 3;
/// TDX attribute: extend the section's contents into MRTD.
pub const TDX_ATTRIBUTE_EXTENDMR: u32 = 1;

/// One "ASEV" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevSection {
    /// Guest-physical base.
    pub base: u32,
    /// Length in bytes.
    pub size: u32,
    /// `SEV_SECTION_*`.
    pub kind: u32,
}

/// One "TDVF" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxSection {
    /// Offset of the section's bytes in the image (0 when it has none).
    pub data_offset: u32,
    /// Bytes taken from the image.
    pub raw_data_size: u32,
    /// Guest-physical base.
    pub memory_address: u64,
    /// Bytes of guest memory.
    pub memory_size: u64,
    /// `TDX_SECTION_*`.
    pub kind: u32,
    /// `TDX_ATTRIBUTE_*`.
    pub attributes: u32,
}

/// Why metadata could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// The signature, version or length is wrong.
    #[error("{0} metadata header is malformed")]
    BadHeader(&'static str),
}

/// Ward's SEV metadata sections.
pub fn sev_sections() -> Vec<SevSection> {
    let range = |start: u64, end: u64, kind| SevSection {
        base: start as u32,
        size: (end - start) as u32,
        kind,
    };
    vec![
        range(
            layout::LOADER_AREA_START,
            layout::SNP_SECRETS_PAGE,
            SEV_SECTION_SNP_SEC_MEM,
        ),
        range(
            layout::SNP_SECRETS_PAGE,
            layout::SNP_SECRETS_PAGE + layout::PAGE_SIZE,
            SEV_SECTION_SNP_SECRETS,
        ),
        range(
            layout::SNP_CPUID_PAGE,
            layout::SNP_CPUID_PAGE + layout::PAGE_SIZE,
            SEV_SECTION_CPUID,
        ),
        range(
            layout::TD_HOB_START,
            layout::LOADER_AREA_END,
            SEV_SECTION_SNP_SEC_MEM,
        ),
    ]
}

/// Ward's TDX metadata sections for an image of `image_size` bytes.
pub fn tdx_sections(image_size: u32) -> Vec<TdxSection> {
    let temporary = |start: u64, end: u64, kind| TdxSection {
        data_offset: 0,
        raw_data_size: 0,
        memory_address: start,
        memory_size: end - start,
        kind,
        attributes: 0,
    };
    let hob_end = layout::TD_HOB_START + layout::TD_HOB_SIZE;
    vec![
        TdxSection {
            data_offset: 0,
            raw_data_size: image_size,
            memory_address: layout::IMAGE_END - u64::from(image_size),
            memory_size: u64::from(image_size),
            kind: TDX_SECTION_BFV,
            attributes: TDX_ATTRIBUTE_EXTENDMR,
        },
        temporary(
            layout::LOADER_AREA_START,
            layout::TD_HOB_START,
            TDX_SECTION_TEMP_MEM,
        ),
        temporary(layout::TD_HOB_START, hob_end, TDX_SECTION_TD_HOB),
        temporary(hob_end, layout::LOADER_AREA_END, TDX_SECTION_TEMP_MEM),
    ]
}

fn header(signature: &[u8; 4], length: usize, version: u32, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(signature);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out
}

/// Encodes "ASEV": signature, length, version, section count, then 12-byte sections.
pub fn encode_sev(sections: &[SevSection]) -> Vec<u8> {
    let mut out = header(
        b"ASEV",
        16 + 12 * sections.len(),
        SEV_METADATA_VERSION,
        sections.len(),
    );
    for s in sections {
        for field in [s.base, s.size, s.kind] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    out
}

/// Encodes "TDVF": signature, length, version, section count, then 32-byte sections.
pub fn encode_tdx(sections: &[TdxSection]) -> Vec<u8> {
    let mut out = header(
        b"TDVF",
        16 + 32 * sections.len(),
        TDX_METADATA_VERSION,
        sections.len(),
    );
    for s in sections {
        out.extend_from_slice(&s.data_offset.to_le_bytes());
        out.extend_from_slice(&s.raw_data_size.to_le_bytes());
        out.extend_from_slice(&s.memory_address.to_le_bytes());
        out.extend_from_slice(&s.memory_size.to_le_bytes());
        out.extend_from_slice(&s.kind.to_le_bytes());
        out.extend_from_slice(&s.attributes.to_le_bytes());
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The sections of a metadata block starting at `bytes[0]`, checking its header.
fn sections<'a>(
    bytes: &'a [u8],
    signature: &'static [u8; 4],
    version: u32,
    section_size: usize,
) -> Result<impl Iterator<Item = &'a [u8]>, MetadataError> {
    let name = if signature == b"ASEV" { "SEV" } else { "TDX" };
    let bad = MetadataError::BadHeader(name);
    if bytes.len() < 16 || &bytes[0..4] != signature || u32_at(bytes, 8) != version {
        return Err(bad);
    }
    let length = u32_at(bytes, 4) as usize;
    let count = u32_at(bytes, 12) as usize;
    if length > bytes.len() || count.checked_mul(section_size).map(|n| n + 16) != Some(length) {
        return Err(bad);
    }
    Ok(bytes[16..length].chunks_exact(section_size))
}

/// Decodes "ASEV" metadata.
pub fn decode_sev(bytes: &[u8]) -> Result<Vec<SevSection>, MetadataError> {
    Ok(sections(bytes, b"ASEV", SEV_METADATA_VERSION, 12)?
        .map(|s| SevSection {
            base: u32_at(s, 0),
            size: u32_at(s, 4),
            kind: u32_at(s, 8),
        })
        .collect())
}

/// Decodes "TDVF" metadata.
pub fn decode_tdx(bytes: &[u8]) -> Result<Vec<TdxSection>, MetadataError> {
    Ok(sections(bytes, b"TDVF", TDX_METADATA_VERSION, 32)?
        .map(|s| TdxSection {
            data_offset: u32_at(s, 0),
            raw_data_size: u32_at(s, 4),
            memory_address: u64_at(s, 8),
            memory_size: u64_at(s, 16),
            kind: u32_at(s, 24),
            attributes: u32_at(s, 28),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_disjoint_pages(ranges: &mut [(u64, u64)]) {
        ranges.sort();
        for (start, end) in ranges.iter() {
            assert_eq!(start % layout::PAGE_SIZE, 0);
            assert_eq!(end % layout::PAGE_SIZE, 0);
        }
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:?} overlap");
        }
    }

    #[test]
    fn sev_sections_cover_the_loader_area_once() {
        let sections = sev_sections();
        let mut ranges: Vec<_> = sections
            .iter()
            .map(|s| (u64::from(s.base), u64::from(s.base + s.size)))
            .collect();
        assert_disjoint_pages(&mut ranges);
        let covered: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        assert_eq!(covered, layout::LOADER_AREA_END - layout::LOADER_AREA_START);
        assert!(sections.contains(&SevSection {
            base: layout::SNP_SECRETS_PAGE as u32,
            size: 0x1000,
            kind: SEV_SECTION_SNP_SECRETS
        }));
        assert_eq!(decode_sev(&encode_sev(&sections)), Ok(sections));
    }

    #[test]
    fn tdx_sections_measure_the_whole_image() {
        let sections = tdx_sections(0x30_0000);
        let bfv = sections[0];
        assert_eq!(bfv.kind, TDX_SECTION_BFV);
        assert_eq!(bfv.memory_address + bfv.memory_size, layout::IMAGE_END);
        assert_eq!(u64::from(bfv.raw_data_size), bfv.memory_size);
        assert_eq!(bfv.attributes, TDX_ATTRIBUTE_EXTENDMR);
        let mut ranges: Vec<_> = sections
            .iter()
            .map(|s| (s.memory_address, s.memory_address + s.memory_size))
            .collect();
        assert_disjoint_pages(&mut ranges);
        let encoded = encode_tdx(&sections);
        assert_eq!(encoded.len(), 16 + 32 * sections.len());
        assert_eq!(decode_tdx(&encoded), Ok(sections));
    }

    #[test]
    fn decoding_refuses_bad_headers() {
        let good = encode_sev(&sev_sections());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(decode_sev(&bad).is_err());
        let mut bad = good.clone();
        bad[12] = 99; // count disagrees with length
        assert!(decode_sev(&bad).is_err());
        assert!(decode_sev(&good[..20]).is_err());
        assert!(decode_tdx(&good).is_err());
    }
}
