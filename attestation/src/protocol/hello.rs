//! ClientHello and ServerHello (docs/protocol.md §2).

use super::ProtocolError;
use super::evidence::{Evidence, EvidenceKind, MAX_EVIDENCE_LEN};
use super::wire::Cursor;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The only protocol version spoken.
pub const PROTOCOL_VERSION: u16 = 1;
/// Body length of a ClientHello.
pub const CLIENT_HELLO_LEN: usize = 67;
/// Longest `status_text`.
pub const MAX_STATUS_TEXT_LEN: usize = 128;
/// Longest deployment configuration carried (docs/config.md).
pub const MAX_CONFIG_LEN: usize = 4096;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Prompts and answers.
    Chat = 1,
    /// The model owner releasing the model key (docs/protocol.md §5).
    KeyRelease = 2,
}

impl Purpose {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Chat),
            2 => Some(Self::KeyRelease),
            _ => None,
        }
    }
}

/// A verified, loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub version: u64,
    /// SHA-384 of the GGUF plaintext.
    pub sha384: [u8; 48],
}

/// What the enclave serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    /// No key released yet.
    NotLoaded,
    Loaded(ModelInfo),
    /// A key was released but the model did not verify; the reason.
    Failed(String),
}

/// The client's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub purpose: Purpose,
    pub client_nonce: [u8; 32],
    pub client_public: [u8; 32],
}

impl ClientHello {
    pub fn encode(&self) -> [u8; CLIENT_HELLO_LEN] {
        let mut b = [0u8; CLIENT_HELLO_LEN];
        b[0..2].copy_from_slice(&self.version.to_be_bytes());
        b[2] = self.purpose as u8;
        b[3..35].copy_from_slice(&self.client_nonce);
        b[35..67].copy_from_slice(&self.client_public);
        b
    }

    /// Parses a ClientHello body; version and purpose are checked so the server can answer
    /// with the right Abort code.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        if body.len() != CLIENT_HELLO_LEN {
            return Err(ProtocolError::MalformedHello("ClientHello length"));
        }
        let version = u16::from_be_bytes([body[0], body[1]]);
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion { version });
        }
        let purpose = Purpose::from_u8(body[2])
            .ok_or(ProtocolError::UnsupportedPurpose { purpose: body[2] })?;
        let mut client_nonce = [0u8; 32];
        client_nonce.copy_from_slice(&body[3..35]);
        let mut client_public = [0u8; 32];
        client_public.copy_from_slice(&body[35..67]);
        Ok(Self {
            version,
            purpose,
            client_nonce,
            client_public,
        })
    }
}

/// The server's answer, without the evidence: everything the transcript covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloCore {
    pub purpose: Purpose,
    pub server_public: [u8; 32],
    /// Present exactly in [`Purpose::KeyRelease`].
    pub release_public: Option<[u8; 32]>,
    pub build_id: [u8; 32],
    pub model: ModelStatus,
    pub config: Vec<u8>,
}

fn truncated_text(text: &str) -> &str {
    if text.len() <= MAX_STATUS_TEXT_LEN {
        return text;
    }
    let mut end = MAX_STATUS_TEXT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl ServerHelloCore {
    /// Encodes the core; fails only if the configuration is too long.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.config.len() > MAX_CONFIG_LEN {
            return Err(ProtocolError::InvalidState(
                "deployment configuration too long",
            ));
        }
        let mut b = Vec::with_capacity(160 + self.config.len());
        b.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        b.push(self.purpose as u8);
        b.extend_from_slice(&self.server_public);
        b.extend_from_slice(&self.release_public.unwrap_or([0; 32]));
        b.extend_from_slice(&self.build_id);
        let (status, version, digest, text) = match &self.model {
            ModelStatus::NotLoaded => (0u8, 0u64, [0u8; 48], ""),
            ModelStatus::Loaded(m) => (1, m.version, m.sha384, truncated_text(&m.id)),
            ModelStatus::Failed(reason) => (2, 0, [0; 48], truncated_text(reason)),
        };
        b.push(status);
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&digest);
        b.push(text.len() as u8);
        b.extend_from_slice(text.as_bytes());
        b.extend_from_slice(&(self.config.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.config);
        Ok(b)
    }

    fn parse(c: &mut Cursor<'_>) -> Result<Self, &'static str> {
        let version = c.u16("version")?;
        if version != PROTOCOL_VERSION {
            return Err("version");
        }
        let purpose = Purpose::from_u8(c.u8("purpose")?).ok_or("purpose")?;
        let server_public = c.array("server_public")?;
        let release = c.array::<32>("release_public")?;
        let release_public = match purpose {
            Purpose::KeyRelease => Some(release),
            Purpose::Chat if release == [0; 32] => None,
            Purpose::Chat => return Err("release_public in a chat session"),
        };
        let build_id = c.array("build_id")?;
        let status = c.u8("model_status")?;
        let version = c.u64("model_version")?;
        let sha384 = c.array::<48>("model_sha384")?;
        let text_len = usize::from(c.u8("status_text")?);
        if text_len > MAX_STATUS_TEXT_LEN {
            return Err("status_text length");
        }
        let text = core::str::from_utf8(c.take(text_len, "status_text")?)
            .map_err(|_| "status_text UTF-8")?
            .to_string();
        let model = match status {
            0 if version == 0 && sha384 == [0; 48] && text.is_empty() => ModelStatus::NotLoaded,
            1 => ModelStatus::Loaded(ModelInfo {
                id: text,
                version,
                sha384,
            }),
            2 if version == 0 && sha384 == [0; 48] => ModelStatus::Failed(text),
            _ => return Err("model_status"),
        };
        let config_len = usize::from(c.u16("config length")?);
        if config_len > MAX_CONFIG_LEN {
            return Err("config length");
        }
        let config = c.take(config_len, "config")?.to_vec();
        Ok(Self {
            purpose,
            server_public,
            release_public,
            build_id,
            model,
            config,
        })
    }
}

/// A parsed ServerHello: the core, its exact encoded bytes (for the transcript) and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub core: ServerHelloCore,
    pub core_bytes: Vec<u8>,
    pub evidence: Evidence,
}

impl ServerHello {
    /// The full body: core || evidence kind || evidence length || evidence.
    pub fn encode_body(core_bytes: &[u8], evidence: &Evidence) -> Vec<u8> {
        let mut b = Vec::with_capacity(core_bytes.len() + 5 + evidence.bytes.len());
        b.extend_from_slice(core_bytes);
        b.push(evidence.kind as u8);
        b.extend_from_slice(&(evidence.bytes.len() as u32).to_be_bytes());
        b.extend_from_slice(&evidence.bytes);
        b
    }

    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        if body.len() >= 2 {
            let version = u16::from_be_bytes([body[0], body[1]]);
            if version != PROTOCOL_VERSION {
                return Err(ProtocolError::UnsupportedVersion { version });
            }
        }
        let mut c = Cursor::new(body);
        let core = ServerHelloCore::parse(&mut c).map_err(ProtocolError::MalformedHello)?;
        let core_bytes = body[..c.position()].to_vec();
        let kind_byte = c
            .u8("evidence_kind")
            .map_err(ProtocolError::MalformedHello)?;
        let kind = EvidenceKind::from_u8(kind_byte)
            .ok_or(ProtocolError::MalformedHello("evidence_kind"))?;
        let len = c
            .u32("evidence length")
            .map_err(ProtocolError::MalformedHello)? as usize;
        if len > MAX_EVIDENCE_LEN {
            return Err(ProtocolError::MalformedHello("evidence length"));
        }
        let bytes = c
            .take(len, "evidence")
            .map_err(ProtocolError::MalformedHello)?
            .to_vec();
        if !c.is_empty() {
            return Err(ProtocolError::MalformedHello("trailing bytes"));
        }
        Ok(Self {
            core,
            core_bytes,
            evidence: Evidence { kind, bytes },
        })
    }
}

/// Abort codes (docs/protocol.md §2).
pub mod abort {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const UNSUPPORTED_PURPOSE: u8 = 2;
    pub const MALFORMED_HELLO: u8 = 3;
    pub const INTERNAL: u8 = 4;
}

/// Body of an Abort frame.
pub fn encode_abort(code: u8, reason: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + reason.len());
    b.push(code);
    b.extend_from_slice(truncated_text(reason).as_bytes());
    b
}

pub fn parse_abort(body: &[u8]) -> ProtocolError {
    match body.split_first() {
        Some((&code, text)) => ProtocolError::Aborted {
            code,
            reason: String::from_utf8_lossy(text).into_owned(),
        },
        None => ProtocolError::MalformedHello("empty Abort"),
    }
}

impl From<&crate::sealed::VerifiedModel> for ModelInfo {
    /// The model a verified sealed image holds, as the ServerHello reports it.
    fn from(model: &crate::sealed::VerifiedModel) -> Self {
        Self {
            id: model.model_id.as_str().into(),
            version: model.model_version,
            sha384: model.plaintext_sha384,
        }
    }
}
