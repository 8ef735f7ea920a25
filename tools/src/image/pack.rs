//! Packing the loader and the kernel ELF into one firmware image, and reading an image back.
//!
//! Layout, from low to high addresses (the image ends at 4 GiB):
//! zero padding to a 64 KiB multiple | kernel ELF (4 KiB aligned) | loader code and data |
//! loader boot page | metadata page (TDVF, ASEV, GUID table) | AP park + reset vector.

use super::elf_segments::{PT_LOAD, SegmentError, program_segments};
use super::metadata::{self, MetadataError, SevSection, TdxSection};
use ward_loader::elf::{ElfError, KernelElf};
use ward_loader::image_format::{
    ENTRY_TRAILER_SIZE, Guid, GuidTable, PayloadDescriptor, PayloadError, SEV_ES_RESET_BLOCK_GUID,
    SEV_METADATA_OFFSET_GUID, TABLE_END_FROM_IMAGE_END, TABLE_FOOTER_GUID, TDX_METADATA_GUID,
    TDX_METADATA_OFFSET_GUID, TableError, WARD_PAYLOAD_GUID,
};
use ward_loader::layout::{
    AP_PARK_ADDRESS, IMAGE_END, IMAGE_GRANULE, IMAGE_MAX_SIZE, METADATA_PAGE, PAGE_SIZE,
    RESET_AREA_SIZE,
};

/// Why packing or inspecting failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The loader ELF is unreadable.
    #[error("loader ELF: {0}")]
    LoaderElf(SegmentError),
    /// A loader segment lies outside the top 16 MiB below 4 GiB.
    #[error("loader segment at {address:#x}+{size:#x} is not inside the firmware window")]
    LoaderSegmentOutside { address: u64, size: u64 },
    /// The loader puts bytes into the metadata page, which belongs to the packer.
    #[error("loader segment at {0:#x} overlaps the metadata page")]
    LoaderInMetadataPage(u64),
    /// The loader does not end with the reset vector at 4 GiB - 16.
    #[error("the loader has no reset vector at 0xfffffff0")]
    NoResetVector,
    /// The kernel ELF fails the loader's own validation.
    #[error("kernel ELF: {0}")]
    KernelElf(ElfError),
    /// Loader plus kernel exceed 16 MiB.
    #[error("image would be {0:#x} bytes, over the 16 MiB firmware limit")]
    TooLarge(u64),
    /// The image has no readable GUID table or Ward payload entry.
    #[error("image: {0}")]
    Payload(PayloadError),
    /// The image's length disagrees with its payload descriptor.
    #[error("image is {actual} bytes but describes itself as {described}")]
    SizeMismatch { actual: usize, described: u32 },
    /// A metadata GUID entry is missing or malformed.
    #[error("image has no valid {0} entry")]
    MissingEntry(&'static str),
    /// SEV or TDX metadata is malformed.
    #[error("{0}")]
    Metadata(MetadataError),
}

impl From<TableError> for PackError {
    fn from(error: TableError) -> Self {
        Self::Payload(PayloadError::Table(error))
    }
}

/// Offset of the TDX metadata GUID inside the metadata page.
const TDX_METADATA_AT: usize = 0;

/// Packs `loader_elf` (the firmware binary, linked just below 4 GiB) and `kernel_elf`.
pub fn pack(loader_elf: &[u8], kernel_elf: &[u8]) -> Result<Vec<u8>, PackError> {
    KernelElf::parse(kernel_elf).map_err(PackError::KernelElf)?;
    let segments: Vec<_> = program_segments(loader_elf)
        .map_err(PackError::LoaderElf)?
        .into_iter()
        .filter(|s| s.kind == PT_LOAD && s.file_size > 0)
        .collect();
    let window_start = IMAGE_END - IMAGE_MAX_SIZE;
    for s in &segments {
        let end = s.physical_address.checked_add(s.file_size);
        if s.physical_address < window_start || end.is_none_or(|end| end > IMAGE_END) {
            return Err(PackError::LoaderSegmentOutside {
                address: s.physical_address,
                size: s.file_size,
            });
        }
        let end = s.physical_address + s.file_size;
        if s.physical_address < IMAGE_END - RESET_AREA_SIZE && end > METADATA_PAGE {
            return Err(PackError::LoaderInMetadataPage(s.physical_address));
        }
    }
    if !segments
        .iter()
        .any(|s| s.physical_address == IMAGE_END - 16)
    {
        return Err(PackError::NoResetVector);
    }
    let loader_start = segments
        .iter()
        .map(|s| s.physical_address)
        .min()
        .unwrap_or(IMAGE_END);
    let loader_start = loader_start & !(PAGE_SIZE - 1);

    let kernel_length = kernel_elf.len() as u64;
    let kernel_start = loader_start
        .checked_sub(kernel_length)
        .filter(|&start| start >= window_start)
        .ok_or(PackError::TooLarge(
            IMAGE_END - window_start + kernel_length,
        ))?
        & !(PAGE_SIZE - 1);
    let image_size = (IMAGE_END - kernel_start).next_multiple_of(IMAGE_GRANULE);
    if image_size > IMAGE_MAX_SIZE {
        return Err(PackError::TooLarge(image_size));
    }
    let image_start = IMAGE_END - image_size;
    let mut image = vec![0u8; image_size as usize];
    for s in &segments {
        let at = (s.physical_address - image_start) as usize;
        image[at..at + s.file_size as usize].copy_from_slice(s.file_bytes(loader_elf));
    }
    let kernel_offset = (kernel_start - image_start) as usize;
    image[kernel_offset..kernel_offset + kernel_elf.len()].copy_from_slice(kernel_elf);

    let payload = PayloadDescriptor {
        image_size: image_size as u32,
        kernel_offset: kernel_offset as u32,
        kernel_size: kernel_elf.len() as u32,
    };
    let page_at = (METADATA_PAGE - image_start) as usize;
    let page_end = image.len() - RESET_AREA_SIZE as usize;
    write_metadata_page(&mut image[page_at..page_end], &payload);
    Ok(image)
}

/// Appends one GUID-table entry: data, `u16` length, GUID.
fn push_entry(table: &mut Vec<u8>, guid: Guid, data: &[u8]) {
    table.extend_from_slice(data);
    table.extend_from_slice(&((data.len() + ENTRY_TRAILER_SIZE) as u16).to_le_bytes());
    table.extend_from_slice(&guid.0);
}

/// Fills the metadata page (without the last 0x20 bytes, which hold the loader's reset area):
/// TDX metadata at its start, SEV metadata after it, the GUID table ending at its end.
fn write_metadata_page(page: &mut [u8], payload: &PayloadDescriptor) {
    // Addresses are distances from the end of the image, as the GUID entries express them.
    let from_end = |offset: usize| (PAGE_SIZE as usize - offset) as u32;

    let tdx = metadata::encode_tdx(&metadata::tdx_sections(payload.image_size));
    let tdx_descriptor_at = TDX_METADATA_AT + 16;
    page[TDX_METADATA_AT..tdx_descriptor_at].copy_from_slice(&TDX_METADATA_GUID.0);
    page[tdx_descriptor_at..tdx_descriptor_at + tdx.len()].copy_from_slice(&tdx);

    let sev = metadata::encode_sev(&metadata::sev_sections());
    let sev_at = (tdx_descriptor_at + tdx.len()).next_multiple_of(16);
    page[sev_at..sev_at + sev.len()].copy_from_slice(&sev);

    let mut table = Vec::new();
    push_entry(&mut table, WARD_PAYLOAD_GUID, &payload.to_bytes());
    push_entry(
        &mut table,
        TDX_METADATA_OFFSET_GUID,
        &from_end(tdx_descriptor_at).to_le_bytes(),
    );
    push_entry(
        &mut table,
        SEV_METADATA_OFFSET_GUID,
        &from_end(sev_at).to_le_bytes(),
    );
    push_entry(
        &mut table,
        SEV_ES_RESET_BLOCK_GUID,
        &(AP_PARK_ADDRESS as u32).to_le_bytes(),
    );
    let total = (table.len() + ENTRY_TRAILER_SIZE) as u16;
    table.extend_from_slice(&total.to_le_bytes());
    table.extend_from_slice(&TABLE_FOOTER_GUID.0);
    let table_at = page.len() - table.len();
    assert!(table_at >= sev_at + sev.len(), "metadata page overflow");
    page[table_at..].copy_from_slice(&table);
}

/// What an image says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Where the kernel is.
    pub payload: PayloadDescriptor,
    /// The SEV-ES AP reset address (CS base in the high 16 bits, IP in the low 16).
    pub sev_es_reset: u32,
    /// SEV metadata sections.
    pub sev_sections: Vec<SevSection>,
    /// TDX metadata sections.
    pub tdx_sections: Vec<TdxSection>,
}

/// Reads back the GUID table, the payload descriptor and the metadata of `image`.
pub fn inspect(image: &[u8]) -> Result<ImageInfo, PackError> {
    let table = GuidTable::parse(image)?;
    let payload = PayloadDescriptor::find(image).map_err(PackError::Payload)?;
    if image.len() != payload.image_size as usize {
        return Err(PackError::SizeMismatch {
            actual: image.len(),
            described: payload.image_size,
        });
    }
    let u32_entry = |guid, name| -> Result<u32, PackError> {
        let data = table.find(guid)?.ok_or(PackError::MissingEntry(name))?;
        let bytes: [u8; 4] = data.try_into().map_err(|_| PackError::MissingEntry(name))?;
        Ok(u32::from_le_bytes(bytes))
    };
    let metadata_at = |distance: u32, name| {
        image
            .len()
            .checked_sub(distance as usize)
            .map(|at| &image[at..])
            .ok_or(PackError::MissingEntry(name))
    };
    let sev_es_reset = u32_entry(SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")?;
    let sev = metadata_at(
        u32_entry(SEV_METADATA_OFFSET_GUID, "SEV metadata")?,
        "SEV metadata",
    )?;
    let tdx = metadata_at(
        u32_entry(TDX_METADATA_OFFSET_GUID, "TDX metadata")?,
        "TDX metadata",
    )?;
    Ok(ImageInfo {
        payload,
        sev_es_reset,
        sev_sections: metadata::decode_sev(sev).map_err(PackError::Metadata)?,
        tdx_sections: metadata::decode_tdx(tdx).map_err(PackError::Metadata)?,
    })
}

/// The kernel ELF inside a packed image.
pub fn kernel_elf(image: &[u8]) -> Result<&[u8], PackError> {
    let payload = PayloadDescriptor::find(image).map_err(PackError::Payload)?;
    image
        .get(payload.kernel_range())
        .ok_or(PackError::SizeMismatch {
            actual: image.len(),
            described: payload.image_size,
        })
}

/// Where QEMU looks for the footer GUID: 0x30 bytes before the end.
pub const FOOTER_FROM_END: usize = TABLE_END_FROM_IMAGE_END + 16;

#[cfg(test)]
mod tests {
    use super::*;
    use ward_loader::elf::test_elf::{Segment, build};
    use ward_loader::layout::KERNEL_VIRTUAL_BASE;

    /// A stand-in loader: code low in its ROM area, the boot page, the AP park, the reset vector
    /// and a `.bss` with no file bytes (which must not land in the image).
    fn fake_loader() -> Vec<u8> {
        let rom = |address: u64, data: &[u8]| Segment::load(5, address, data, 0);
        let bss = Segment::load(6, 0x11_0000, &[], 0x100);
        build(
            0xFFFF_FFF0,
            &[
                rom(0xFFFE_0000, &[0x90; 0x300]),
                rom(0xFFFF_E000, &[0xFC; 0x40]),
                rom(0xFFFF_FFE0, &[0xFA, 0xF4, 0xEB, 0xFD]),
                rom(0xFFFF_FFF0, &[0xFA, 0xE9, 0x0C, 0xE0]),
                bss,
            ],
        )
    }

    fn fake_kernel(size: usize) -> Vec<u8> {
        let text = vec![0xC3; size];
        build(
            KERNEL_VIRTUAL_BASE,
            &[Segment::load(5, KERNEL_VIRTUAL_BASE, &text, 0)],
        )
    }

    #[test]
    fn packs_a_64k_multiple_with_the_guid_table_where_qemu_looks() {
        let kernel = fake_kernel(0x3000);
        let image = pack(&fake_loader(), &kernel).unwrap();
        assert_eq!(image.len() % 0x1_0000, 0);
        assert!(image.len() <= 16 << 20);
        // QEMU (pc_system_parse_ovmf_flash): footer GUID 0x30 bytes before the end, the table
        // length right before it.
        let footer = image.len() - FOOTER_FROM_END;
        assert_eq!(&image[footer..footer + 16], &TABLE_FOOTER_GUID.0);
        let table_length = u16::from_le_bytes([image[footer - 2], image[footer - 1]]) as usize;
        assert!(table_length > ENTRY_TRAILER_SIZE && table_length < 0x1000);
        // Reset vector and AP park come from the loader untouched.
        assert_eq!(
            &image[image.len() - 16..image.len() - 12],
            &[0xFA, 0xE9, 0x0C, 0xE0]
        );
        assert_eq!(
            &image[image.len() - 32..image.len() - 28],
            &[0xFA, 0xF4, 0xEB, 0xFD]
        );
        // The loader's code lands at its ROM address.
        let at = |address: u64| image.len() - (IMAGE_END - address) as usize;
        assert_eq!(image[at(0xFFFE_0000)], 0x90);
        assert_eq!(image[at(0xFFFF_E000)], 0xFC);

        let info = inspect(&image).unwrap();
        assert_eq!(info.payload.image_size as usize, image.len());
        assert_eq!(kernel_elf(&image).unwrap(), &kernel[..]);
        assert_eq!(info.payload.kernel_offset % 0x1000, 0);
        assert!(
            (info.payload.kernel_offset + info.payload.kernel_size) as usize <= at(0xFFFE_0000),
            "kernel overlaps the loader"
        );
        assert_eq!(info.sev_es_reset, 0xFFFF_FFE0);
        assert_eq!(info.sev_sections, metadata::sev_sections());
        assert_eq!(
            info.tdx_sections,
            metadata::tdx_sections(image.len() as u32)
        );
        // The TDX descriptor is preceded by its GUID, as TDVF does.
        let tdvf = image.len() - 0x1000 + 16;
        assert_eq!(&image[tdvf - 16..tdvf], &TDX_METADATA_GUID.0);
        assert_eq!(&image[tdvf..tdvf + 4], b"TDVF");
    }

    #[test]
    fn packing_is_deterministic_and_sizes_follow_the_kernel() {
        let small = pack(&fake_loader(), &fake_kernel(0x1000)).unwrap();
        assert_eq!(small, pack(&fake_loader(), &fake_kernel(0x1000)).unwrap());
        let large = pack(&fake_loader(), &fake_kernel(0x12_3456)).unwrap();
        assert!(large.len() > small.len());
        assert_eq!(large.len() % 0x1_0000, 0);
        assert_eq!(
            inspect(&large).unwrap().payload.image_size as usize,
            large.len()
        );
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_kernel() {
        let loader = fake_loader();
        assert!(matches!(
            pack(&loader, &fake_kernel(16 << 20)),
            Err(PackError::TooLarge(_))
        ));
        assert!(matches!(
            pack(&loader, b"not an elf"),
            Err(PackError::KernelElf(_))
        ));
        let no_reset = build(0xFFFE_0000, &[Segment::load(5, 0xFFFE_0000, &[0x90], 0)]);
        assert!(matches!(
            pack(&no_reset, &fake_kernel(16)),
            Err(PackError::NoResetVector)
        ));
        let into_metadata = build(
            0xFFFF_FFF0,
            &[
                Segment::load(5, 0xFFFF_F100, &[0x90], 0),
                Segment::load(5, 0xFFFF_FFF0, &[0x90], 0),
            ],
        );
        assert!(matches!(
            pack(&into_metadata, &fake_kernel(16)),
            Err(PackError::LoaderInMetadataPage(0xFFFF_F100))
        ));
        let low = build(0x10_0000, &[Segment::load(5, 0x10_0000, &[0x90], 0)]);
        assert!(matches!(
            pack(&low, &fake_kernel(16)),
            Err(PackError::LoaderSegmentOutside { .. })
        ));
    }

    #[test]
    fn inspect_refuses_damaged_images() {
        let mut image = pack(&fake_loader(), &fake_kernel(0x1000)).unwrap();
        let truncated = &image[0x1_0000..];
        assert!(matches!(
            inspect(truncated),
            Err(PackError::SizeMismatch { .. })
        ));
        let footer = image.len() - FOOTER_FROM_END;
        image[footer] ^= 1;
        assert!(matches!(inspect(&image), Err(PackError::Payload(_))));
    }
}
