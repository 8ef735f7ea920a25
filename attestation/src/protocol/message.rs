//! Messages carried in records: the request, the end of a response, errors.

use super::ProtocolError;
use super::hello::ModelInfo;
use super::wire::Cursor;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Largest reassembled request.
pub const MAX_REQUEST_LEN: usize = 65_536;

/// A prompt. Secret: wiped when dropped, and `Debug` shows only lengths so it never reaches a
/// log by accident.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Request {
    pub max_new_tokens: u32,
    pub system: String,
    pub user: String,
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Request {{ max_new_tokens: {}, system: <{} bytes>, user: <{} bytes> }}",
            self.max_new_tokens,
            self.system.len(),
            self.user.len()
        )
    }
}

impl Request {
    pub fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, ProtocolError> {
        let len = 8 + self.system.len() + self.user.len();
        if len > MAX_REQUEST_LEN {
            return Err(ProtocolError::MessageTooLarge {
                max: MAX_REQUEST_LEN,
            });
        }
        let mut b = zeroize::Zeroizing::new(Vec::with_capacity(len));
        b.extend_from_slice(&self.max_new_tokens.to_be_bytes());
        b.extend_from_slice(&(self.system.len() as u32).to_be_bytes());
        b.extend_from_slice(self.system.as_bytes());
        b.extend_from_slice(self.user.as_bytes());
        Ok(b)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let bad = |_| ProtocolError::MalformedRecord("request");
        let mut c = Cursor::new(bytes);
        let max_new_tokens = c.u32("max_new_tokens").map_err(bad)?;
        let system_len = c.u32("system length").map_err(bad)? as usize;
        let system = core::str::from_utf8(c.take(system_len, "system").map_err(bad)?)
            .map_err(|_| ProtocolError::MalformedRecord("request system prompt UTF-8"))?;
        let user = core::str::from_utf8(c.rest())
            .map_err(|_| ProtocolError::MalformedRecord("request message UTF-8"))?;
        Ok(Self {
            max_new_tokens,
            system: system.to_string(),
            user: user.to_string(),
        })
    }
}

/// The authenticated end of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerEnd {
    pub token_count: u32,
    pub answer_len: u64,
    pub answer_sha384: [u8; 48],
}

impl AnswerEnd {
    pub fn encode(&self) -> [u8; 60] {
        let mut b = [0u8; 60];
        b[..4].copy_from_slice(&self.token_count.to_be_bytes());
        b[4..12].copy_from_slice(&self.answer_len.to_be_bytes());
        b[12..].copy_from_slice(&self.answer_sha384);
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, ProtocolError> {
        let bad = |_| ProtocolError::MalformedRecord("answer end");
        let mut c = Cursor::new(b);
        Ok(Self {
            token_count: c.u32("token_count").map_err(bad)?,
            answer_len: c.u64("answer_len").map_err(bad)?,
            answer_sha384: c.array("answer_sha384").map_err(bad)?,
        })
    }
}

/// Error codes of Error records (docs/protocol.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The bounded admission queue is full.
    Busy = 1,
    /// A key was released but the model did not load; the message says why.
    ModelNotLoaded = 2,
    /// No model key was released yet.
    NoModelLoaded = 3,
    BadRequest = 4,
    Internal = 5,
    /// The key-release message did not open (wrong sender, other handshake, tampered).
    KeyReleaseRefused = 6,
}

impl ErrorCode {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Busy,
            2 => Self::ModelNotLoaded,
            3 => Self::NoModelLoaded,
            4 => Self::BadRequest,
            5 => Self::Internal,
            6 => Self::KeyReleaseRefused,
            _ => return None,
        })
    }

    /// The text a user sees before the message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::ModelNotLoaded => "model not loaded",
            Self::NoModelLoaded => "no model loaded",
            Self::BadRequest => "bad request",
            Self::Internal => "internal error",
            Self::KeyReleaseRefused => "key release refused",
        }
    }
}

/// An Error record's payload.
pub(crate) fn encode_error(code: ErrorCode, message: &str, max: usize) -> Vec<u8> {
    let mut end = message.len().min(max - 1);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = Vec::with_capacity(1 + end);
    b.push(code as u8);
    b.extend_from_slice(&message.as_bytes()[..end]);
    b
}

pub(crate) fn parse_error(payload: &[u8]) -> Result<(ErrorCode, String), ProtocolError> {
    let (&code, text) = payload
        .split_first()
        .ok_or(ProtocolError::MalformedRecord("error"))?;
    let code = ErrorCode::from_u8(code).ok_or(ProtocolError::MalformedRecord("error code"))?;
    let text =
        core::str::from_utf8(text).map_err(|_| ProtocolError::MalformedRecord("error text"))?;
    Ok((code, text.to_string()))
}

/// A KeyReleaseResult payload.
pub(crate) fn encode_model_info(info: &ModelInfo, max: usize) -> Vec<u8> {
    let mut end = info.id.len().min(max - 57);
    while !info.id.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = Vec::with_capacity(57 + end);
    b.extend_from_slice(&info.version.to_be_bytes());
    b.extend_from_slice(&info.sha384);
    b.push(end as u8);
    b.extend_from_slice(&info.id.as_bytes()[..end]);
    b
}

pub(crate) fn parse_model_info(payload: &[u8]) -> Result<ModelInfo, ProtocolError> {
    let bad = |_| ProtocolError::MalformedRecord("key release result");
    let mut c = Cursor::new(payload);
    let version = c.u64("model_version").map_err(bad)?;
    let sha384 = c.array("model_sha384").map_err(bad)?;
    let len = usize::from(c.u8("id length").map_err(bad)?);
    let id = core::str::from_utf8(c.take(len, "id").map_err(bad)?)
        .map_err(|_| ProtocolError::MalformedRecord("model id UTF-8"))?
        .to_string();
    if !c.is_empty() {
        return Err(ProtocolError::MalformedRecord(
            "key release result trailing bytes",
        ));
    }
    Ok(ModelInfo {
        id,
        version,
        sha384,
    })
}
