//! The 256-byte sealed header: layout, encoding and structural checks (no key needed).

use super::SealedError;

/// `WARDSEAL`.
pub const MAGIC: [u8; 8] = *b"WARDSEAL";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Encoded header length, tag included.
pub const HEADER_LEN: usize = 256;
/// Where chunk 0 starts on disk: the header area is one 4 KiB page.
pub const CHUNKS_OFFSET: u64 = 4096;
/// Disk sector size; the image and every full chunk are multiples of it.
pub const SECTOR_SIZE: u64 = 512;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of the random per-image nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Longest model id in bytes.
pub const MAX_MODEL_ID_LEN: usize = 64;
/// Smallest allowed on-disk chunk size.
pub const MIN_CHUNK_SIZE: u32 = 4096;
/// Largest allowed on-disk chunk size (bounds the enclave's read buffer).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Default on-disk chunk size.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Largest model (1 TiB); keeps every chunk index below 2^32 - 1.
pub const MAX_PLAINTEXT_LEN: u64 = 1 << 40;

/// Offset of the header tag; bytes before it are the tag's associated data.
pub(super) const TAG_OFFSET: usize = HEADER_LEN - TAG_LEN;

/// A model id: 1 to 64 bytes of UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelId {
    len: u8,
    bytes: [u8; MAX_MODEL_ID_LEN],
}

impl ModelId {
    /// Checks and wraps an id.
    pub fn new(id: &str) -> Result<Self, SealedError> {
        if id.is_empty() || id.len() > MAX_MODEL_ID_LEN {
            return Err(SealedError::InvalidHeaderField { field: "model_id" });
        }
        let mut bytes = [0u8; MAX_MODEL_ID_LEN];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Ok(Self {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Constructed only from a `&str` or from bytes checked with `from_utf8`.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::fmt::Debug for ModelId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The decoded header. Parsing checks structure only; [`super::Unsealer::new`] checks the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub chunk_size: u32,
    pub plaintext_len: u64,
    pub model_version: u64,
    pub plaintext_sha384: [u8; 48],
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    pub model_id: ModelId,
    pub header_tag: [u8; TAG_LEN],
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Checks the rules shared by parsing and sealing.
pub(super) fn check_geometry(chunk_size: u32, plaintext_len: u64) -> Result<(), SealedError> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        || u64::from(chunk_size) % SECTOR_SIZE != 0
    {
        return Err(SealedError::InvalidHeaderField {
            field: "chunk_size",
        });
    }
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(SealedError::InvalidHeaderField {
            field: "plaintext_len",
        });
    }
    Ok(())
}

impl SealedHeader {
    /// Parses and structurally checks the first [`HEADER_LEN`] bytes of an image.
    pub fn parse(bytes: &[u8]) -> Result<Self, SealedError> {
        if bytes.len() < HEADER_LEN {
            return Err(SealedError::HeaderTooShort { len: bytes.len() });
        }
        let b = &bytes[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err(SealedError::BadMagic);
        }
        let version = read_u16(b, 8);
        if version != FORMAT_VERSION {
            return Err(SealedError::UnsupportedFormatVersion { version });
        }
        if usize::from(read_u16(b, 10)) != HEADER_LEN {
            return Err(SealedError::InvalidHeaderField {
                field: "header_len",
            });
        }
        let chunk_size = read_u32(b, 12);
        let plaintext_len = read_u64(b, 16);
        check_geometry(chunk_size, plaintext_len)?;
        let model_version = read_u64(b, 24);
        let mut plaintext_sha384 = [0u8; 48];
        plaintext_sha384.copy_from_slice(&b[32..80]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[80..87]);
        let id_len = usize::from(b[87]);
        if id_len == 0 || id_len > MAX_MODEL_ID_LEN || b[88 + id_len..152].iter().any(|&x| x != 0) {
            return Err(SealedError::InvalidHeaderField { field: "model_id" });
        }
        let id = core::str::from_utf8(&b[88..88 + id_len])
            .map_err(|_| SealedError::InvalidHeaderField { field: "model_id" })?;
        let model_id = ModelId::new(id)?;
        if b[152..TAG_OFFSET].iter().any(|&x| x != 0) {
            return Err(SealedError::InvalidHeaderField { field: "reserved" });
        }
        let mut header_tag = [0u8; TAG_LEN];
        header_tag.copy_from_slice(&b[TAG_OFFSET..HEADER_LEN]);
        Ok(Self {
            chunk_size,
            plaintext_len,
            model_version,
            plaintext_sha384,
            nonce_prefix,
            model_id,
            header_tag,
        })
    }

    /// Encodes the header, tag included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.plaintext_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.model_version.to_le_bytes());
        b[32..80].copy_from_slice(&self.plaintext_sha384);
        b[80..87].copy_from_slice(&self.nonce_prefix);
        b[87] = self.model_id.len;
        b[88..152].copy_from_slice(&self.model_id.bytes);
        b[TAG_OFFSET..].copy_from_slice(&self.header_tag);
        b
    }

    /// Plaintext bytes carried by each full chunk.
    pub fn plaintext_per_chunk(&self) -> u64 {
        u64::from(self.chunk_size) - TAG_LEN as u64
    }

    /// Number of chunks (at least one, even for an empty model).
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len
            .div_ceil(self.plaintext_per_chunk())
            .max(1)
    }

    /// Plaintext length of chunk `index` (which must be below `chunk_count`).
    pub fn chunk_plaintext_len(&self, index: u64) -> usize {
        let per = self.plaintext_per_chunk();
        let start = index * per;
        (self.plaintext_len.saturating_sub(start)).min(per) as usize
    }

    /// Byte offset of chunk `index` on disk.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        CHUNKS_OFFSET + index * u64::from(self.chunk_size)
    }

    /// Length of the whole image, padded to a whole number of sectors.
    pub fn image_len(&self) -> u64 {
        let last = self.chunk_count() - 1;
        let end = self.chunk_offset(last) + (self.chunk_plaintext_len(last) + TAG_LEN) as u64;
        end.div_ceil(SECTOR_SIZE) * SECTOR_SIZE
    }
}
