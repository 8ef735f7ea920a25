//! Every way reading or writing a sealed model can fail.

use core::fmt;

/// A sealed image was refused (or could not be written). Each tamper case has its own variant so
/// the enclave can say exactly why it serves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedError {
    /// Fewer header bytes than [`super::HEADER_LEN`].
    HeaderTooShort { len: usize },
    /// The image does not start with `WARDSEAL`.
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedFormatVersion { version: u16 },
    /// A header field breaks its rule in docs/sealed-model.md.
    InvalidHeaderField { field: &'static str },
    /// The header tag does not verify: the header was changed or the key is wrong.
    HeaderAuthentication,
    /// The model is older than the configured minimum (anti-rollback).
    VersionBelowMinimum { version: u64, minimum: u64 },
    /// A chunk has a different length than the header implies (truncated or padded chunk).
    ChunkLength {
        index: u64,
        expected: usize,
        got: usize,
    },
    /// A chunk's tag does not verify: changed, moved, dropped or from another image.
    ChunkAuthentication { index: u64 },
    /// All chunks authenticated but their SHA-384 differs from the header's.
    PlaintextDigestMismatch,
    /// More chunks were offered after the last one.
    AlreadyComplete,
    /// `finish` was called before the last chunk.
    Incomplete { next_index: u64, chunk_count: u64 },
    /// A previous error ended this reader; nothing it produced may be used.
    Poisoned,
    /// Sealing: the plaintext given does not match the declared length.
    PlaintextLength { expected: u64, got: u64 },
    /// An output buffer is too small for a chunk and its tag.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for SealedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderTooShort { len } => write!(f, "sealed header too short ({len} bytes)"),
            Self::BadMagic => f.write_str("not a sealed Ward model (bad magic)"),
            Self::UnsupportedFormatVersion { version } => {
                write!(f, "unsupported sealed format version {version}")
            }
            Self::InvalidHeaderField { field } => {
                write!(f, "invalid sealed header field `{field}`")
            }
            Self::HeaderAuthentication => {
                f.write_str("sealed header does not authenticate (tampered header or wrong key)")
            }
            Self::VersionBelowMinimum { version, minimum } => {
                write!(
                    f,
                    "model version {version} is below the minimum {minimum} (rollback)"
                )
            }
            Self::ChunkLength {
                index,
                expected,
                got,
            } => {
                write!(
                    f,
                    "chunk {index} has {got} bytes, expected {expected} (truncated image?)"
                )
            }
            Self::ChunkAuthentication { index } => write!(
                f,
                "chunk {index} does not authenticate (tampered, reordered or dropped chunk)"
            ),
            Self::PlaintextDigestMismatch => f.write_str("model SHA-384 does not match the header"),
            Self::AlreadyComplete => f.write_str("extra chunk after the last chunk"),
            Self::Incomplete {
                next_index,
                chunk_count,
            } => {
                write!(
                    f,
                    "model incomplete: chunk {next_index} of {chunk_count} missing"
                )
            }
            Self::Poisoned => f.write_str("unsealing already failed"),
            Self::PlaintextLength { expected, got } => {
                write!(
                    f,
                    "plaintext length {got} differs from the declared {expected}"
                )
            }
            Self::BufferTooSmall { needed, got } => {
                write!(f, "buffer of {got} bytes too small, {needed} needed")
            }
        }
    }
}

impl core::error::Error for SealedError {}
