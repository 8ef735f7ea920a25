//! Writing a sealed image (the host side of `ward seal`).

use super::chunk_crypto::{ChunkBinding, cipher, header_digest, header_tag};
use super::header::{HEADER_LEN, NONCE_PREFIX_LEN, check_geometry};
use super::{CHUNKS_OFFSET, ModelId, ModelKey, SealedError, SealedHeader, TAG_LEN};
use aes_gcm::Aes256Gcm;
use alloc::vec::Vec;
use sha2::{Digest, Sha384};

/// What the header of a new image says.
#[derive(Debug, Clone)]
pub struct SealParams<'a> {
    pub model_id: &'a str,
    pub model_version: u64,
    pub plaintext_len: u64,
    pub plaintext_sha384: [u8; 48],
    pub chunk_size: u32,
    /// Random per image.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

/// Encrypts a model chunk by chunk, in order. The caller writes [`Sealer::header_bytes`] at
/// offset 0, each sealed chunk at [`SealedHeader::chunk_offset`], and pads the image to
/// [`SealedHeader::image_len`].
pub struct Sealer {
    cipher: Aes256Gcm,
    header: SealedHeader,
    encoded: [u8; HEADER_LEN],
    digest: [u8; 48],
    next_index: u64,
}

impl Sealer {
    /// Builds and tags the header.
    pub fn new(key: &ModelKey, params: &SealParams<'_>) -> Result<Self, SealedError> {
        check_geometry(params.chunk_size, params.plaintext_len)?;
        let mut header = SealedHeader {
            chunk_size: params.chunk_size,
            plaintext_len: params.plaintext_len,
            model_version: params.model_version,
            plaintext_sha384: params.plaintext_sha384,
            nonce_prefix: params.nonce_prefix,
            model_id: ModelId::new(params.model_id)?,
            header_tag: [0; TAG_LEN],
        };
        let cipher = cipher(key);
        header.header_tag = header_tag(&cipher, &header.encode());
        let encoded = header.encode();
        Ok(Self {
            cipher,
            digest: header_digest(&encoded),
            header,
            encoded,
            next_index: 0,
        })
    }

    /// The header as decoded values.
    pub fn header(&self) -> &SealedHeader {
        &self.header
    }

    /// The 256 header bytes for offset 0 of the image.
    pub fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.encoded
    }

    /// Plaintext length the next chunk must have, or `None` when all chunks are sealed.
    pub fn next_chunk_plaintext_len(&self) -> Option<usize> {
        (self.next_index < self.header.chunk_count())
            .then(|| self.header.chunk_plaintext_len(self.next_index))
    }

    /// Seals the next chunk in place: `buf` holds the chunk's plaintext followed by
    /// [`TAG_LEN`] spare bytes, and afterwards holds ciphertext || tag (the on-disk chunk).
    pub fn seal_chunk_in_place(&mut self, buf: &mut [u8]) -> Result<(), SealedError> {
        let Some(plain_len) = self.next_chunk_plaintext_len() else {
            return Err(SealedError::AlreadyComplete);
        };
        if buf.len() != plain_len + TAG_LEN {
            return Err(SealedError::PlaintextLength {
                expected: plain_len as u64,
                got: buf.len().saturating_sub(TAG_LEN) as u64,
            });
        }
        let index = self.next_index;
        let last = index + 1 == self.header.chunk_count();
        let binding = ChunkBinding::new(&self.header.nonce_prefix, &self.digest, index, last);
        let (body, tag) = buf.split_at_mut(plain_len);
        tag.copy_from_slice(&binding.seal(&self.cipher, body));
        self.next_index += 1;
        Ok(())
    }
}

/// Seals a whole model held in memory into a complete, padded disk image. Convenient for tests
/// and small models; `ward seal` streams with [`Sealer`] instead.
pub fn seal_image(
    key: &ModelKey,
    model_id: &str,
    model_version: u64,
    chunk_size: u32,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealedError> {
    let params = SealParams {
        model_id,
        model_version,
        plaintext_len: plaintext.len() as u64,
        plaintext_sha384: Sha384::digest(plaintext).into(),
        chunk_size,
        nonce_prefix,
    };
    let mut sealer = Sealer::new(key, &params)?;
    let image_len = usize::try_from(sealer.header().image_len()).map_err(|_| {
        SealedError::InvalidHeaderField {
            field: "plaintext_len",
        }
    })?;
    let mut image = Vec::with_capacity(image_len);
    image.extend_from_slice(sealer.header_bytes());
    image.resize(CHUNKS_OFFSET as usize, 0);
    let mut consumed = 0usize;
    while let Some(len) = sealer.next_chunk_plaintext_len() {
        let start = image.len();
        image.extend_from_slice(&plaintext[consumed..consumed + len]);
        image.resize(start + len + TAG_LEN, 0);
        sealer.seal_chunk_in_place(&mut image[start..])?;
        consumed += len;
    }
    image.resize(image_len, 0);
    Ok(image)
}
