//! Token ids back to text: each token's bytes (computed once, at load), and a streaming decoder
//! that only ever hands out complete UTF-8.

use super::bpe::BpeModel;
use super::byte_level::char_to_byte;
use super::{TokenType, Tokenizer};
use alloc::string::String;
use alloc::vec::Vec;

/// Appends the bytes token `id` decodes to, as llama.cpp's `token_to_piece(special = true)`.
pub(super) fn append_piece(bpe: &BpeModel, id: u32, kind: TokenType, out: &mut Vec<u8>) {
    let Some(text) = bpe.token_text(id) else {
        return;
    };
    match kind {
        TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
            out.extend_from_slice(text);
        }
        TokenType::Normal => append_byte_level(text, out),
        TokenType::Byte => out.extend(parse_byte_token(text)),
        TokenType::Unused | TokenType::Undefined => {}
    }
}

/// Undoes the byte-alphabet spelling. A character outside the alphabet is shown the way
/// llama.cpp shows it: `[UNK_BYTE_0x<its UTF-8 in hex><the token text>]`.
fn append_byte_level(text: &[u8], out: &mut Vec<u8>) {
    let Ok(text) = core::str::from_utf8(text) else {
        out.extend_from_slice(text);
        return;
    };
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = [0u8; 4];
                for &b in c.encode_utf8(&mut utf8).as_bytes() {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// `<0xAB>` -> 0xAB.
fn parse_byte_token(text: &[u8]) -> Option<u8> {
    let hex = text.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    Some((digit(hex[0])? * 16 + digit(hex[1])?) as u8)
}

/// Turns a stream of token ids into text, holding back the bytes of a character that is split
/// across tokens until it is complete. Bytes that can never form valid UTF-8 become U+FFFD, so
/// the concatenated output equals `String::from_utf8_lossy` of all the tokens' bytes.
///
/// Buffers are reused: pushing a token allocates nothing once they have grown.
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    render_special: bool,
    /// Bytes of a character still incomplete.
    pending: Vec<u8>,
    /// Text handed out by the last call.
    ready: String,
}

impl core::fmt::Debug for StreamDecoder<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("render_special", &self.render_special)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<'t> StreamDecoder<'t> {
    pub(super) fn new(tokenizer: &'t Tokenizer, render_special: bool) -> Self {
        Self {
            tokenizer,
            render_special,
            pending: Vec::with_capacity(8),
            ready: String::new(),
        }
    }

    /// Adds one token; returns the text that became complete, if any.
    pub fn push(&mut self, id: u32) -> Option<&str> {
        self.ready.clear();
        self.pending
            .extend_from_slice(self.tokenizer.piece(id, self.render_special));
        self.drain(false);
        (!self.ready.is_empty()).then_some(self.ready.as_str())
    }

    /// Ends the stream: an unfinished character becomes U+FFFD. The decoder can be reused.
    pub fn finish(&mut self) -> &str {
        self.ready.clear();
        self.drain(true);
        &self.ready
    }

    /// Whether bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn drain(&mut self, at_end: bool) {
        let mut start = 0;
        while start < self.pending.len() {
            match core::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    self.ready.push_str(text);
                    start = self.pending.len();
                }
                Err(error) => {
                    let valid_end = start + error.valid_up_to();
                    if let Ok(text) = core::str::from_utf8(&self.pending[start..valid_end]) {
                        self.ready.push_str(text);
                    }
                    start = valid_end;
                    match error.error_len() {
                        Some(bad) => {
                            self.ready.push(char::REPLACEMENT_CHARACTER);
                            start += bad;
                        }
                        None if at_end => {
                            self.ready.push(char::REPLACEMENT_CHARACTER);
                            start = self.pending.len();
                        }
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token(b"<0x0A>"), Some(b'\n'));
        assert_eq!(parse_byte_token(b"<0xff>"), Some(0xFF));
        assert_eq!(parse_byte_token(b"<0xG0>"), None);
        assert_eq!(parse_byte_token(b"<0x0>"), None);
    }

    #[test]
    fn byte_level_text() {
        let mut out = Vec::new();
        append_byte_level("ĠhelloĊ".as_bytes(), &mut out);
        assert_eq!(out, b" hello\n");
        out.clear();
        append_byte_level("a日".as_bytes(), &mut out);
        assert_eq!(out, "a[UNK_BYTE_0xe697a5a日]".as_bytes());
    }
}
