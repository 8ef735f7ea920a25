//! Evidence arrives as raw binary (what the hardware returns) or as hex text (what people paste
//! into files and tickets). A file is hex text when it is made only of hex digits and white
//! space, optionally after a `0x` prefix; real reports and quotes always hold bytes outside that
//! set (their version fields start with zero bytes), so the two cannot be confused.

use super::EvidenceError;
use alloc::vec::Vec;

/// Raw bytes of an evidence file, decoding hex text when the file is hex text.
pub fn decode_evidence(file: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    match hex_text_body(file) {
        Some(text) => decode_hex(text),
        None => Ok(file.to_vec()),
    }
}

fn hex_text_body(file: &[u8]) -> Option<&[u8]> {
    let trimmed = file.trim_ascii();
    let body = trimmed
        .strip_prefix(b"0x")
        .or_else(|| trimmed.strip_prefix(b"0X"))
        .unwrap_or(trimmed);
    let is_text = !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    is_text.then_some(body)
}

/// Decodes hex digits, ignoring white space between them.
pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for (position, byte) in text.iter().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        let nibble = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return Err(EvidenceError::BadHex { position }),
        };
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    match high {
        None => Ok(out),
        Some(_) => Err(EvidenceError::BadHex {
            position: text.len(),
        }),
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> alloc::string::String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = alloc::string::String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_passes_through_and_hex_is_decoded() {
        assert_eq!(decode_evidence(&[2, 0, 0, 0]).unwrap(), [2, 0, 0, 0]);
        assert_eq!(decode_evidence(b"0x0200 00ff\n").unwrap(), [2, 0, 0, 0xff]);
        assert_eq!(decode_evidence(b"AbCd").unwrap(), [0xab, 0xcd]);
        assert_eq!(
            decode_evidence(b"abc"),
            Err(EvidenceError::BadHex { position: 3 })
        );
        assert_eq!(to_hex(&[0x0f, 0xa0]), "0fa0");
    }
}
