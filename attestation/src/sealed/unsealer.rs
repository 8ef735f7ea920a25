//! Reading a sealed image inside the enclave, chunk by chunk, without I/O.

use super::chunk_crypto::{ChunkBinding, cipher, header_digest, verify_header_tag};
use super::header::HEADER_LEN;
use super::{ModelId, ModelKey, SealedError, SealedHeader, TAG_LEN};
use aes_gcm::Aes256Gcm;
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

/// Where the next chunk lies on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub index: u64,
    /// Byte offset from the start of the disk.
    pub offset: u64,
    /// Bytes to read: ciphertext plus tag.
    pub len: usize,
}

/// A model whose every chunk and whose SHA-384 verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedModel {
    pub model_id: ModelId,
    pub model_version: u64,
    pub plaintext_len: u64,
    pub plaintext_sha384: [u8; 48],
}

enum State {
    Reading,
    Complete,
    Failed,
}

/// Verifies and decrypts a sealed image. Feed it the chunks in order; it reports success only
/// after the last chunk authenticated and the plaintext SHA-384 matched the header.
pub struct Unsealer {
    cipher: Aes256Gcm,
    header: SealedHeader,
    digest: [u8; 48],
    next_index: u64,
    hasher: Sha384,
    state: State,
}

impl Unsealer {
    /// Parses the header, verifies its tag under `key`, and refuses versions below
    /// `min_model_version`.
    pub fn new(
        key: &ModelKey,
        header_bytes: &[u8],
        min_model_version: u64,
    ) -> Result<Self, SealedError> {
        let header = SealedHeader::parse(header_bytes)?;
        let mut encoded = [0u8; HEADER_LEN];
        encoded.copy_from_slice(&header_bytes[..HEADER_LEN]);
        let cipher = cipher(key);
        verify_header_tag(&cipher, &encoded)?;
        if header.model_version < min_model_version {
            return Err(SealedError::VersionBelowMinimum {
                version: header.model_version,
                minimum: min_model_version,
            });
        }
        Ok(Self {
            cipher,
            digest: header_digest(&encoded),
            header,
            next_index: 0,
            hasher: Sha384::new(),
            state: State::Reading,
        })
    }

    /// The authenticated header.
    pub fn header(&self) -> &SealedHeader {
        &self.header
    }

    /// The chunk to read next, or `None` once complete (or failed).
    pub fn next_chunk(&self) -> Option<ChunkLocation> {
        match self.state {
            State::Reading => Some(ChunkLocation {
                index: self.next_index,
                offset: self.header.chunk_offset(self.next_index),
                len: self.header.chunk_plaintext_len(self.next_index) + TAG_LEN,
            }),
            State::Complete | State::Failed => None,
        }
    }

    /// Authenticates and decrypts the next chunk where it lies: `chunk` is the on-disk chunk
    /// (ciphertext || tag); on success its first `n` bytes are plaintext and `n` is returned.
    /// On the last chunk this also checks the plaintext SHA-384.
    pub fn open_chunk_in_place(&mut self, chunk: &mut [u8]) -> Result<usize, SealedError> {
        match self.state {
            State::Reading => {}
            State::Complete => return Err(SealedError::AlreadyComplete),
            State::Failed => return Err(SealedError::Poisoned),
        }
        let result = self.open_next(chunk);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn open_next(&mut self, chunk: &mut [u8]) -> Result<usize, SealedError> {
        let index = self.next_index;
        let plain_len = self.header.chunk_plaintext_len(index);
        if chunk.len() != plain_len + TAG_LEN {
            return Err(SealedError::ChunkLength {
                index,
                expected: plain_len + TAG_LEN,
                got: chunk.len(),
            });
        }
        let last = index + 1 == self.header.chunk_count();
        let binding = ChunkBinding::new(&self.header.nonce_prefix, &self.digest, index, last);
        let (body, tag_bytes) = chunk.split_at_mut(plain_len);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        binding
            .open(&self.cipher, body, &tag)
            .map_err(|()| SealedError::ChunkAuthentication { index })?;
        self.hasher.update(&*body);
        self.next_index += 1;
        if last {
            let digest: [u8; 48] = core::mem::take(&mut self.hasher).finalize().into();
            if !bool::from(digest.ct_eq(&self.header.plaintext_sha384)) {
                return Err(SealedError::PlaintextDigestMismatch);
            }
            self.state = State::Complete;
        }
        Ok(plain_len)
    }

    /// Succeeds only when every chunk authenticated and the SHA-384 matched.
    pub fn finish(self) -> Result<VerifiedModel, SealedError> {
        match self.state {
            State::Complete => Ok(VerifiedModel {
                model_id: self.header.model_id.clone(),
                model_version: self.header.model_version,
                plaintext_len: self.header.plaintext_len,
                plaintext_sha384: self.header.plaintext_sha384,
            }),
            State::Failed => Err(SealedError::Poisoned),
            State::Reading => Err(SealedError::Incomplete {
                next_index: self.next_index,
                chunk_count: self.header.chunk_count(),
            }),
        }
    }
}
