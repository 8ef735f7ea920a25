//! Record contents (docs/protocol.md §3): the 256-byte plaintext of every record.

use super::ProtocolError;
use super::frame::RECORD_PLAINTEXT_LEN;
use zeroize::Zeroizing;

/// Payload bytes a record carries at most.
pub const MAX_PAYLOAD: usize = RECORD_PLAINTEXT_LEN - 4;

pub const CONTENT_DUMMY: u8 = 0x00;
pub const CONTENT_REQUEST: u8 = 0x01;
pub const CONTENT_ANSWER_TEXT: u8 = 0x02;
pub const CONTENT_ANSWER_END: u8 = 0x03;
pub const CONTENT_ERROR: u8 = 0x04;
pub const CONTENT_KEY_RELEASE: u8 = 0x05;
pub const CONTENT_KEY_RELEASE_RESULT: u8 = 0x06;
pub const CONTENT_CLOSE: u8 = 0x07;

const FLAG_FINAL: u8 = 0x01;

/// One decrypted record: type, FINAL flag and payload.
pub struct Content<'a> {
    pub content_type: u8,
    pub last_fragment: bool,
    pub payload: &'a [u8],
}

/// Builds a record plaintext; `payload` must be at most [`MAX_PAYLOAD`] bytes.
pub fn encode_content(
    content_type: u8,
    last_fragment: bool,
    payload: &[u8],
) -> Result<Zeroizing<[u8; RECORD_PLAINTEXT_LEN]>, ProtocolError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtocolError::InvalidState("record payload too long"));
    }
    let mut p = Zeroizing::new([0u8; RECORD_PLAINTEXT_LEN]);
    p[0] = content_type;
    p[1] = if last_fragment { FLAG_FINAL } else { 0 };
    p[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[4..4 + payload.len()].copy_from_slice(payload);
    Ok(p)
}

/// Checks the format of an authenticated record plaintext.
pub fn parse_content(plain: &[u8; RECORD_PLAINTEXT_LEN]) -> Result<Content<'_>, ProtocolError> {
    let content_type = plain[0];
    if content_type > CONTENT_CLOSE {
        return Err(ProtocolError::UnexpectedRecord { content_type });
    }
    let flags = plain[1];
    if flags & !FLAG_FINAL != 0 || (flags != 0 && content_type != CONTENT_REQUEST) {
        return Err(ProtocolError::MalformedRecord("flags"));
    }
    let len = usize::from(u16::from_be_bytes([plain[2], plain[3]]));
    if len > MAX_PAYLOAD {
        return Err(ProtocolError::MalformedRecord("payload length"));
    }
    if plain[4 + len..].iter().any(|&b| b != 0) {
        return Err(ProtocolError::MalformedRecord("padding not zero"));
    }
    let fixed_len = match content_type {
        CONTENT_DUMMY | CONTENT_CLOSE => Some(0),
        CONTENT_ANSWER_END => Some(60),
        CONTENT_KEY_RELEASE => Some(80),
        _ => None,
    };
    if fixed_len.is_some_and(|n| n != len) {
        return Err(ProtocolError::MalformedRecord(
            "payload length for its type",
        ));
    }
    Ok(Content {
        content_type,
        last_fragment: flags & FLAG_FINAL != 0,
        payload: &plain[4..4 + len],
    })
}
