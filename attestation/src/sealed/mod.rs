//! The sealed model format (docs/sealed-model.md, version 1): an authenticated header followed by
//! AES-256-GCM chunks bound to their index, a last-chunk flag and the header digest.
//!
//! [`Sealer`] writes the format (host side), [`Unsealer`] reads it chunk by chunk (enclave side),
//! without I/O: the caller reads the disk and hands the bytes over.

mod chunk_crypto;
mod error;
mod header;
mod key;
mod sealer;
mod unsealer;

#[cfg(test)]
mod tests;

pub use error::SealedError;
pub use header::{
    CHUNKS_OFFSET, DEFAULT_CHUNK_SIZE, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_CHUNK_SIZE,
    MAX_MODEL_ID_LEN, MAX_PLAINTEXT_LEN, MIN_CHUNK_SIZE, ModelId, NONCE_PREFIX_LEN, SECTOR_SIZE,
    SealedHeader, TAG_LEN,
};
pub use key::{MODEL_KEY_LEN, ModelKey};
pub use sealer::{SealParams, Sealer, seal_image};
pub use unsealer::{ChunkLocation, Unsealer, VerifiedModel};
