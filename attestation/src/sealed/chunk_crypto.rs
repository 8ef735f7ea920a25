//! Nonces, associated data and the header tag (docs/sealed-model.md, "Cryptography").

use super::header::{HEADER_LEN, NONCE_PREFIX_LEN, TAG_OFFSET};
use super::{ModelKey, SealedError, TAG_LEN};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use sha2::{Digest, Sha384};

type GcmNonce = aes_gcm::Nonce<aes_gcm::aead::consts::U12>;

const KIND_CHUNK: u8 = 0x00;
const KIND_LAST_CHUNK: u8 = 0x01;
const KIND_HEADER: u8 = 0x02;
const HEADER_NONCE_INDEX: u32 = u32::MAX;
const CHUNK_AAD_LABEL: &[u8; 13] = b"WARD-CHUNK-v1";

/// Length of a chunk's associated data.
const CHUNK_AAD_LEN: usize = CHUNK_AAD_LABEL.len() + 48 + 8 + 1;

pub(super) fn cipher(key: &ModelKey) -> Aes256Gcm {
    Aes256Gcm::new(key.as_bytes().into())
}

fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], index: u32, kind: u8) -> GcmNonce {
    let mut n = [0u8; 12];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
    n[11] = kind;
    n.into()
}

/// The tag that authenticates header bytes `0..240`.
pub(super) fn header_tag(cipher: &Aes256Gcm, header: &[u8; HEADER_LEN]) -> [u8; TAG_LEN] {
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    prefix.copy_from_slice(&header[80..87]);
    let n = nonce(&prefix, HEADER_NONCE_INDEX, KIND_HEADER);
    let mut empty: [u8; 0] = [];
    // Encrypting the empty string cannot fail (the length limit is 2^36 bytes).
    let tag = cipher
        .encrypt_inout_detached(&n, &header[..TAG_OFFSET], (&mut empty[..]).into())
        .unwrap_or_default();
    tag.into()
}

/// Checks the header tag in constant time.
pub(super) fn verify_header_tag(
    cipher: &Aes256Gcm,
    header: &[u8; HEADER_LEN],
) -> Result<(), SealedError> {
    use subtle::ConstantTimeEq;
    let expected = header_tag(cipher, header);
    if bool::from(expected.ct_eq(&header[TAG_OFFSET..])) {
        Ok(())
    } else {
        Err(SealedError::HeaderAuthentication)
    }
}

/// SHA-384 of the full encoded header, bound into every chunk.
pub(super) fn header_digest(header: &[u8; HEADER_LEN]) -> [u8; 48] {
    Sha384::digest(header).into()
}

/// Per-chunk nonce and associated data.
pub(super) struct ChunkBinding {
    nonce: GcmNonce,
    aad: [u8; CHUNK_AAD_LEN],
}

impl ChunkBinding {
    pub(super) fn new(
        prefix: &[u8; NONCE_PREFIX_LEN],
        header_digest: &[u8; 48],
        index: u64,
        last: bool,
    ) -> Self {
        let kind = if last { KIND_LAST_CHUNK } else { KIND_CHUNK };
        // Chunk counts stay below 2^32 - 1 (MAX_PLAINTEXT_LEN / MIN_CHUNK_SIZE), so this never
        // truncates and never meets the header's index.
        let nonce = nonce(prefix, index as u32, kind);
        let mut aad = [0u8; CHUNK_AAD_LEN];
        let (label, rest) = aad.split_at_mut(CHUNK_AAD_LABEL.len());
        label.copy_from_slice(CHUNK_AAD_LABEL);
        rest[..48].copy_from_slice(header_digest);
        rest[48..56].copy_from_slice(&index.to_le_bytes());
        rest[56] = u8::from(last);
        Self { nonce, aad }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(super) fn seal(&self, cipher: &Aes256Gcm, buf: &mut [u8]) -> [u8; TAG_LEN] {
        // Chunks are at most 16 MiB, far below GCM's length limit, so this cannot fail.
        cipher
            .encrypt_inout_detached(&self.nonce, &self.aad, buf.into())
            .unwrap_or_default()
            .into()
    }

    /// Decrypts `buf` in place if `tag` verifies; otherwise leaves an error.
    pub(super) fn open(
        &self,
        cipher: &Aes256Gcm,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ()> {
        let tag = Tag::from(*tag);
        cipher
            .decrypt_inout_detached(&self.nonce, &self.aad, buf.into(), &tag)
            .map_err(|_| ())
    }
}
