//! The attested session protocol (docs/protocol.md, version 1): framing, ClientHello /
//! ServerHello with evidence over the transcript, HKDF-SHA-384 keys, fixed-size AES-256-GCM
//! records with implicit sequence numbers, fixed-cadence streaming and an authenticated end of
//! response. Both sides are sans-I/O state machines: bytes in, bytes and events out.

mod client;
mod error;
pub mod evidence;
pub mod frame;
mod hello;
mod keys;
mod message;
mod record;
mod server;
pub mod simulated;
mod wire;

#[cfg(test)]
mod tests;

pub use client::{ClientEvent, ClientParams, ClientSession, SessionInfo};
pub use error::ProtocolError;
pub use evidence::{
    Binding, Evidence, EvidenceKind, EvidenceProvider, EvidenceRejected, EvidenceVerifier,
    NoHardwareVerifier, VerifiedEvidence,
};
pub use frame::{RECORD_PLAINTEXT_LEN, RECORD_WIRE_LEN};
pub use hello::{ModelInfo, ModelStatus, PROTOCOL_VERSION, Purpose};
pub use keys::transcript_hash;
pub use message::{AnswerEnd, ErrorCode, MAX_REQUEST_LEN, Request};
pub use record::MAX_PAYLOAD;
pub use server::{ServerEvent, ServerParams, ServerSession};
pub use simulated::{SimulatedAttester, SimulatedReport};
