//! Every way a session can end in error. Any of them ends the session for good.

use alloc::string::String;
use core::fmt;

use super::evidence::{EvidenceKind, EvidenceRejected};
use crate::keyrelease::KeyReleaseError;

/// Why a session failed. The variants name the attack they detect where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame declared more bytes than the current state allows (checked before allocating).
    FrameTooLarge { len: u32, max: u32 },
    /// A frame of length zero.
    EmptyFrame,
    /// A frame type that is unknown or not allowed in the current state.
    UnexpectedFrame { frame_type: u8 },
    /// A record frame of the wrong length: every record has the same size.
    RecordSize { len: u32, expected: u32 },
    /// A ClientHello or ServerHello that does not parse.
    MalformedHello(&'static str),
    /// The peer speaks another protocol version.
    UnsupportedVersion { version: u16 },
    /// The ClientHello asks for a purpose this side does not serve.
    UnsupportedPurpose { purpose: u8 },
    /// The ServerHello does not echo the client's purpose.
    PurposeMismatch,
    /// The server refused the handshake (unauthenticated Abort frame).
    Aborted { code: u8, reason: String },
    /// The evidence was refused; says which check failed.
    Evidence(EvidenceRejected),
    /// The server could not produce evidence.
    EvidenceUnavailable(String),
    /// The X25519 exchange gave an all-zero secret (a low-order public key).
    WeakKeyExchange,
    /// A record did not authenticate under the expected sequence number: replayed, reordered,
    /// dropped, altered or injected.
    RecordAuthentication { seq: u64 },
    /// A record that authenticated but breaks the record format.
    MalformedRecord(&'static str),
    /// A record type not allowed now (or in this direction).
    UnexpectedRecord { content_type: u8 },
    /// A reassembled message larger than allowed.
    MessageTooLarge { max: usize },
    /// The stream ended without a Close record while something was still expected.
    Truncated,
    /// The authenticated end of response disagrees with the answer received.
    AnswerMismatch,
    /// The per-direction sequence number would wrap.
    SequenceExhausted,
    /// The API was used out of order (a caller bug, not an attack).
    InvalidState(&'static str),
    /// The session already failed or closed; nothing more is processed.
    Finished,
    /// Sealing or opening the released model key failed.
    KeyRelease(KeyReleaseError),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            Self::EmptyFrame => f.write_str("empty frame"),
            Self::UnexpectedFrame { frame_type } => {
                write!(f, "unexpected frame type {frame_type:#04x}")
            }
            Self::RecordSize { len, expected } => {
                write!(
                    f,
                    "record frame of {len} bytes, every record must be {expected}"
                )
            }
            Self::MalformedHello(what) => write!(f, "malformed hello: {what}"),
            Self::UnsupportedVersion { version } => {
                write!(f, "unsupported protocol version {version}")
            }
            Self::UnsupportedPurpose { purpose } => write!(f, "unsupported purpose {purpose}"),
            Self::PurposeMismatch => f.write_str("server answered for another purpose"),
            Self::Aborted { code, reason } => {
                write!(f, "server refused the handshake (code {code}): {reason}")
            }
            Self::Evidence(why) => write!(f, "evidence rejected: {why}"),
            Self::EvidenceUnavailable(why) => write!(f, "evidence unavailable: {why}"),
            Self::WeakKeyExchange => f.write_str("key exchange with a low-order public key"),
            Self::RecordAuthentication { seq } => write!(
                f,
                "record {seq} does not authenticate (replayed, reordered, dropped or altered)"
            ),
            Self::MalformedRecord(what) => write!(f, "malformed record: {what}"),
            Self::UnexpectedRecord { content_type } => {
                write!(f, "unexpected record type {content_type:#04x}")
            }
            Self::MessageTooLarge { max } => write!(f, "message larger than {max} bytes"),
            Self::Truncated => f.write_str("stream truncated (ended without a Close record)"),
            Self::AnswerMismatch => {
                f.write_str("answer does not match its authenticated end (length or SHA-384)")
            }
            Self::SequenceExhausted => f.write_str("record sequence number exhausted"),
            Self::InvalidState(what) => write!(f, "invalid use of the session: {what}"),
            Self::Finished => f.write_str("session already ended"),
            Self::KeyRelease(why) => write!(f, "key release: {why}"),
        }
    }
}

impl core::error::Error for ProtocolError {}

impl From<EvidenceRejected> for ProtocolError {
    fn from(why: EvidenceRejected) -> Self {
        Self::Evidence(why)
    }
}

impl From<KeyReleaseError> for ProtocolError {
    fn from(why: KeyReleaseError) -> Self {
        Self::KeyRelease(why)
    }
}

/// Used by `EvidenceRejected::NoVerifier` and friends.
pub(crate) fn kind_name(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::Simulated => "simulated",
        EvidenceKind::SevSnp => "SEV-SNP",
        EvidenceKind::Tdx => "TDX",
    }
}
