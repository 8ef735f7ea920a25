//! The firmware image's self-description: the OVMF-style GUID table at the end of the image and
//! the Ward payload descriptor that says where the kernel ELF is (docs/image-format.md).
//!
//! The table ends 0x20 bytes before the end of the image. Its last entry is the footer: a 16-bit
//! length of the whole table (footer included) followed by the footer GUID. Every entry has the
//! form `data, u16 length (data + 18), GUID`, so a reader walks backwards from the footer.

use core::fmt;

/// A GUID in its on-disk (mixed-endian, EFI) byte order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds a GUID from its textual fields `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// Footer of the OVMF GUID table: `96b582de-1fb2-45f7-baea-a366c55a082d`.
pub const TABLE_FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// SEV-ES AP reset block: `00f771de-1a7e-4fcb-890e-68c77e2fb44e`; data is a `u32` whose high
/// 16 bits are the CS base >> 16 and whose low 16 bits are the IP.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::from_fields(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// SEV metadata offset: `dc886566-984a-4798-a75e-5585a7bf67cc`; data is a `u32` distance from
/// the end of the image to the "ASEV" header.
pub const SEV_METADATA_OFFSET_GUID: Guid = Guid::from_fields(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// TDX metadata offset: `e47a6535-984a-4798-865e-4685a7bf8ec2`; data is a `u32` distance from
/// the end of the image to the "TDVF" descriptor.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::from_fields(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);
/// The GUID that precedes the "TDVF" descriptor itself: `e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae`.
pub const TDX_METADATA_GUID: Guid = Guid::from_fields(
    0xe9ea_f9f3,
    0x168e,
    0x44d5,
    [0xa8, 0xeb, 0x7f, 0x4d, 0x87, 0x38, 0xf6, 0xae],
);
/// Ward's own entry, the [`PayloadDescriptor`]: `6dbd585d-0b67-4be0-8320-bdcb437b7070`.
pub const WARD_PAYLOAD_GUID: Guid = Guid::from_fields(
    0x6dbd_585d,
    0x0b67,
    0x4be0,
    [0x83, 0x20, 0xbd, 0xcb, 0x43, 0x7b, 0x70, 0x70],
);

/// Distance from the end of the image to the end of the GUID table.
pub const TABLE_END_FROM_IMAGE_END: usize = 0x20;
/// Bytes of an entry's trailer: `u16` length and the GUID.
pub const ENTRY_TRAILER_SIZE: usize = 2 + 16;

/// Why the GUID table could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The bytes given are shorter than the fixed tail the table lives in.
    TooShort(usize),
    /// No footer GUID where it must be: not an image with a GUID table.
    NoFooter,
    /// The footer's length is smaller than the footer or reaches past the bytes given.
    BadTableLength(u16),
    /// An entry's length is smaller than its trailer or reaches past the table start.
    BadEntryLength { guid: Guid, length: u16 },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "{n} bytes are too few to hold the image's GUID table"),
            Self::NoFooter => write!(f, "no GUID table footer 0x20 bytes before the image end"),
            Self::BadTableLength(n) => write!(f, "GUID table length {n} is out of bounds"),
            Self::BadEntryLength { guid, length } => {
                write!(
                    f,
                    "GUID table entry {guid} has out-of-bounds length {length}"
                )
            }
        }
    }
}

/// The GUID table found at the end of `tail` (which must end where the image ends).
#[derive(Clone, Copy, Debug)]
pub struct GuidTable<'a> {
    /// The entries, footer excluded, as stored.
    entries: &'a [u8],
}

impl<'a> GuidTable<'a> {
    /// Locates and bounds-checks the table in the last bytes of an image.
    pub fn parse(tail: &'a [u8]) -> Result<Self, TableError> {
        let minimum = TABLE_END_FROM_IMAGE_END + ENTRY_TRAILER_SIZE;
        if tail.len() < minimum {
            return Err(TableError::TooShort(tail.len()));
        }
        let table_end = tail.len() - TABLE_END_FROM_IMAGE_END;
        let footer_guid = &tail[table_end - 16..table_end];
        if footer_guid != TABLE_FOOTER_GUID.0 {
            return Err(TableError::NoFooter);
        }
        let length = read_u16(tail, table_end - ENTRY_TRAILER_SIZE);
        let length_usize = usize::from(length);
        if length_usize < ENTRY_TRAILER_SIZE || length_usize > table_end {
            return Err(TableError::BadTableLength(length));
        }
        let start = table_end - length_usize;
        Ok(Self {
            entries: &tail[start..table_end - ENTRY_TRAILER_SIZE],
        })
    }

    /// Iterates over the entries from the last (nearest the footer) to the first.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            remaining: self.entries,
        }
    }

    /// The data of the first entry (searching backwards) with `guid`.
    pub fn find(&self, guid: Guid) -> Result<Option<&'a [u8]>, TableError> {
        for entry in self.entries() {
            let (found, data) = entry?;
            if found == guid {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// Iterator over GUID table entries, newest (highest address) first.
pub struct Entries<'a> {
    remaining: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Guid, &'a [u8]), TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.remaining;
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < ENTRY_TRAILER_SIZE {
            self.remaining = &[];
            return Some(Err(TableError::BadTableLength(bytes.len() as u16)));
        }
        let end = bytes.len();
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&bytes[end - 16..]);
        let guid = Guid(guid);
        let length = read_u16(bytes, end - ENTRY_TRAILER_SIZE);
        let length_usize = usize::from(length);
        if length_usize < ENTRY_TRAILER_SIZE || length_usize > end {
            self.remaining = &[];
            return Some(Err(TableError::BadEntryLength { guid, length }));
        }
        let start = end - length_usize;
        self.remaining = &bytes[..start];
        Some(Ok((guid, &bytes[start..end - ENTRY_TRAILER_SIZE])))
    }
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Version of the [`PayloadDescriptor`] layout.
pub const PAYLOAD_FORMAT_VERSION: u32 = 1;
/// Size of the encoded [`PayloadDescriptor`].
pub const PAYLOAD_DESCRIPTOR_SIZE: usize = 16;

/// Ward's GUID-table entry: where the kernel ELF sits inside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadDescriptor {
    /// Size of the whole image in bytes.
    pub image_size: u32,
    /// Offset of the kernel ELF from the start of the image.
    pub kernel_offset: u32,
    /// Length of the kernel ELF in bytes.
    pub kernel_size: u32,
}

/// Why the payload descriptor was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The GUID table could not be read.
    Table(TableError),
    /// The image has no Ward payload entry.
    Missing,
    /// The entry has the wrong length.
    BadLength(usize),
    /// The descriptor's version is not one this loader knows.
    UnsupportedVersion(u32),
    /// The image size is zero, not a multiple of 64 KiB, or above 16 MiB.
    BadImageSize(u32),
    /// The kernel range is empty or does not lie inside the image.
    KernelOutOfBounds {
        offset: u32,
        size: u32,
        image_size: u32,
    },
}

impl From<TableError> for PayloadError {
    fn from(error: TableError) -> Self {
        Self::Table(error)
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(e) => write!(f, "{e}"),
            Self::Missing => write!(
                f,
                "the image has no Ward payload entry ({WARD_PAYLOAD_GUID})"
            ),
            Self::BadLength(n) => write!(f, "Ward payload entry has {n} bytes, expected 16"),
            Self::UnsupportedVersion(v) => write!(f, "Ward payload format version {v} unknown"),
            Self::BadImageSize(s) => {
                write!(
                    f,
                    "image size {s:#x} is not a non-zero multiple of 64 KiB up to 16 MiB"
                )
            }
            Self::KernelOutOfBounds {
                offset,
                size,
                image_size,
            } => write!(
                f,
                "kernel at {offset:#x}+{size:#x} does not fit in a {image_size:#x}-byte image"
            ),
        }
    }
}

impl PayloadDescriptor {
    /// Encodes the entry's data (version first).
    pub fn to_bytes(&self) -> [u8; PAYLOAD_DESCRIPTOR_SIZE] {
        let mut out = [0u8; PAYLOAD_DESCRIPTOR_SIZE];
        out[0..4].copy_from_slice(&PAYLOAD_FORMAT_VERSION.to_le_bytes());
        out[4..8].copy_from_slice(&self.image_size.to_le_bytes());
        out[8..12].copy_from_slice(&self.kernel_offset.to_le_bytes());
        out[12..16].copy_from_slice(&self.kernel_size.to_le_bytes());
        out
    }

    /// Decodes and validates the entry's data.
    pub fn from_bytes(data: &[u8]) -> Result<Self, PayloadError> {
        if data.len() != PAYLOAD_DESCRIPTOR_SIZE {
            return Err(PayloadError::BadLength(data.len()));
        }
        let version = read_u32(data, 0);
        if version != PAYLOAD_FORMAT_VERSION {
            return Err(PayloadError::UnsupportedVersion(version));
        }
        let descriptor = Self {
            image_size: read_u32(data, 4),
            kernel_offset: read_u32(data, 8),
            kernel_size: read_u32(data, 12),
        };
        descriptor.validate()?;
        Ok(descriptor)
    }

    /// Finds and decodes the descriptor in an image's tail.
    pub fn find(tail: &[u8]) -> Result<Self, PayloadError> {
        let table = GuidTable::parse(tail)?;
        let data = table
            .find(WARD_PAYLOAD_GUID)?
            .ok_or(PayloadError::Missing)?;
        Self::from_bytes(data)
    }

    fn validate(&self) -> Result<(), PayloadError> {
        let size = u64::from(self.image_size);
        if size == 0
            || size % crate::layout::IMAGE_GRANULE != 0
            || size > crate::layout::IMAGE_MAX_SIZE
        {
            return Err(PayloadError::BadImageSize(self.image_size));
        }
        let end = u64::from(self.kernel_offset) + u64::from(self.kernel_size);
        // The kernel must stay below the metadata page, which the table itself occupies.
        let limit = size - crate::layout::PAGE_SIZE;
        if self.kernel_size == 0 || end > limit {
            return Err(PayloadError::KernelOutOfBounds {
                offset: self.kernel_offset,
                size: self.kernel_size,
                image_size: self.image_size,
            });
        }
        Ok(())
    }

    /// The kernel's byte range within the image.
    pub fn kernel_range(&self) -> core::ops::Range<usize> {
        let start = self.kernel_offset as usize;
        start..start + self.kernel_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn guid_bytes_follow_the_efi_convention() {
        // The footer GUID as OVMF's ResetVectorVtf0.asm spells out its bytes.
        assert_eq!(
            TABLE_FOOTER_GUID.0,
            [
                0xDE, 0x82, 0xB5, 0x96, 0xB2, 0x1F, 0xF7, 0x45, 0xBA, 0xEA, 0xA3, 0x66, 0xC5, 0x5A,
                0x08, 0x2D
            ]
        );
        assert_eq!(
            SEV_ES_RESET_BLOCK_GUID.0,
            [
                0xDE, 0x71, 0xF7, 0x00, 0x7E, 0x1A, 0xCB, 0x4F, 0x89, 0x0E, 0x68, 0xC7, 0x7E, 0x2F,
                0xB4, 0x4E
            ]
        );
        assert_eq!(
            alloc::format!("{SEV_METADATA_OFFSET_GUID}"),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
        assert_eq!(
            alloc::format!("{TDX_METADATA_OFFSET_GUID}"),
            "e47a6535-984a-4798-865e-4685a7bf8ec2"
        );
    }

    /// Builds a tail: `prefix` zero bytes, the entries, footer, and 0x20 bytes of reset area.
    fn tail_with(entries: &[(Guid, &[u8])], prefix: usize) -> Vec<u8> {
        let mut table = Vec::new();
        for (guid, data) in entries {
            table.extend_from_slice(data);
            table.extend_from_slice(&((data.len() + ENTRY_TRAILER_SIZE) as u16).to_le_bytes());
            table.extend_from_slice(&guid.0);
        }
        let total = (table.len() + ENTRY_TRAILER_SIZE) as u16;
        table.extend_from_slice(&total.to_le_bytes());
        table.extend_from_slice(&TABLE_FOOTER_GUID.0);
        let mut tail = alloc::vec![0u8; prefix];
        tail.extend_from_slice(&table);
        tail.extend_from_slice(&[0xF4; TABLE_END_FROM_IMAGE_END]);
        tail
    }

    #[test]
    fn finds_entries_walking_backwards() {
        let descriptor = PayloadDescriptor {
            image_size: 0x20_0000,
            kernel_offset: 0x1000,
            kernel_size: 0x5000,
        };
        let bytes = descriptor.to_bytes();
        let tail = tail_with(
            &[
                (WARD_PAYLOAD_GUID, &bytes),
                (SEV_ES_RESET_BLOCK_GUID, &[0xE0, 0xFF, 0xFF, 0xFF]),
            ],
            64,
        );
        let table = GuidTable::parse(&tail).unwrap();
        let guids: Vec<Guid> = table.entries().map(|e| e.unwrap().0).collect();
        assert_eq!(guids, [SEV_ES_RESET_BLOCK_GUID, WARD_PAYLOAD_GUID]);
        assert_eq!(PayloadDescriptor::find(&tail), Ok(descriptor));
        assert_eq!(table.find(TDX_METADATA_OFFSET_GUID), Ok(None));
    }

    #[test]
    fn refuses_missing_footer_and_bad_lengths() {
        assert_eq!(
            GuidTable::parse(&[0u8; 0x40]).unwrap_err(),
            TableError::NoFooter
        );
        assert_eq!(
            GuidTable::parse(&[0u8; 8]).unwrap_err(),
            TableError::TooShort(8)
        );

        let mut tail = tail_with(&[], 0);
        let len_at = tail.len() - TABLE_END_FROM_IMAGE_END - ENTRY_TRAILER_SIZE;
        tail[len_at..len_at + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(
            GuidTable::parse(&tail).unwrap_err(),
            TableError::BadTableLength(0xFFFF)
        );

        // An entry whose length claims more than the table holds.
        let mut tail = tail_with(&[(WARD_PAYLOAD_GUID, &[0u8; 16])], 0);
        let entry_len_at = 16;
        tail[entry_len_at..entry_len_at + 2].copy_from_slice(&500u16.to_le_bytes());
        let table = GuidTable::parse(&tail).unwrap();
        assert!(matches!(
            table.find(WARD_PAYLOAD_GUID),
            Err(TableError::BadEntryLength { length: 500, .. })
        ));
        // An entry length below its own trailer.
        tail[entry_len_at..entry_len_at + 2].copy_from_slice(&3u16.to_le_bytes());
        let table = GuidTable::parse(&tail).unwrap();
        assert!(matches!(
            table.find(WARD_PAYLOAD_GUID),
            Err(TableError::BadEntryLength { .. })
        ));
    }

    #[test]
    fn payload_descriptor_is_validated() {
        let good = PayloadDescriptor {
            image_size: 0x10_0000,
            kernel_offset: 0,
            kernel_size: 0x8000,
        };
        assert_eq!(PayloadDescriptor::from_bytes(&good.to_bytes()), Ok(good));
        let cases = [
            PayloadDescriptor {
                image_size: 0,
                ..good
            },
            PayloadDescriptor {
                image_size: 0x10_0001,
                ..good
            },
            PayloadDescriptor {
                image_size: 0x200_0000,
                ..good
            },
        ];
        for bad in cases {
            assert!(matches!(
                PayloadDescriptor::from_bytes(&bad.to_bytes()),
                Err(PayloadError::BadImageSize(_))
            ));
        }
        let outside = [
            PayloadDescriptor {
                kernel_size: 0,
                ..good
            },
            PayloadDescriptor {
                kernel_offset: 0xF_F000,
                ..good
            },
            PayloadDescriptor {
                kernel_offset: u32::MAX,
                kernel_size: u32::MAX,
                ..good
            },
        ];
        for bad in outside {
            assert!(matches!(
                PayloadDescriptor::from_bytes(&bad.to_bytes()),
                Err(PayloadError::KernelOutOfBounds { .. })
            ));
        }
        let mut wrong_version = good.to_bytes();
        wrong_version[0] = 9;
        assert_eq!(
            PayloadDescriptor::from_bytes(&wrong_version),
            Err(PayloadError::UnsupportedVersion(9))
        );
        assert_eq!(
            PayloadDescriptor::from_bytes(&[0; 12]),
            Err(PayloadError::BadLength(12))
        );
        assert_eq!(
            PayloadDescriptor::find(&tail_with(&[], 0)),
            Err(PayloadError::Missing)
        );
    }
}
