//! The GetQuote buffer (GHCI, "TDG.VP.VMCALL<GetQuote>"): a shared buffer with a 24-byte header
//! — version (u64, 1), status (u64), input length (u32), output length (u32) — followed by the
//! TDREPORT going in and the quote coming back. The host's quoting service fills in the quote;
//! the header and the quote are untrusted until the quote verifies at the client, but the guest
//! checks everything it can so a lying host produces a typed error, not a malformed session.

use core::fmt;

pub const HEADER_LEN: usize = 24;
const VERSION: u64 = 1;
const STATUS_SUCCESS: u64 = 0;
const STATUS_IN_FLIGHT: u64 = u64::MAX;
/// TDREPORT_STRUCT size.
pub const TDREPORT_LEN: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetQuoteError {
    /// The buffer cannot hold the header and the TDREPORT.
    BufferTooSmall(usize),
    /// The quote is not ready yet (the caller waits and checks again).
    InFlight,
    /// The quoting service failed (status).
    Failed(u64),
    /// The host changed the header's version.
    BadVersion(u64),
    /// The output length is zero or runs past the buffer.
    BadLength(u32),
}

impl fmt::Display for GetQuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall(n) => write!(f, "GetQuote buffer of {n} bytes is too small"),
            Self::InFlight => f.write_str("quote generation still in flight"),
            Self::Failed(s) => write!(f, "quote generation failed (status {s:#x})"),
            Self::BadVersion(v) => write!(f, "GetQuote header version {v}"),
            Self::BadLength(n) => write!(f, "GetQuote output length {n}"),
        }
    }
}

/// Fills `buffer` (private staging copy of the shared buffer) with the request for `tdreport`.
pub fn encode_request(
    buffer: &mut [u8],
    tdreport: &[u8; TDREPORT_LEN],
) -> Result<(), GetQuoteError> {
    if buffer.len() < HEADER_LEN + TDREPORT_LEN {
        return Err(GetQuoteError::BufferTooSmall(buffer.len()));
    }
    buffer.fill(0);
    buffer[0..8].copy_from_slice(&VERSION.to_le_bytes());
    buffer[8..16].copy_from_slice(&STATUS_SUCCESS.to_le_bytes());
    buffer[16..20].copy_from_slice(&(TDREPORT_LEN as u32).to_le_bytes());
    buffer[HEADER_LEN..HEADER_LEN + TDREPORT_LEN].copy_from_slice(tdreport);
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The quote in a completed buffer (copied out of shared memory first).
pub fn decode_response(buffer: &[u8]) -> Result<&[u8], GetQuoteError> {
    if buffer.len() < HEADER_LEN {
        return Err(GetQuoteError::BufferTooSmall(buffer.len()));
    }
    let version = u64_at(buffer, 0);
    if version != VERSION {
        return Err(GetQuoteError::BadVersion(version));
    }
    match u64_at(buffer, 8) {
        STATUS_SUCCESS => {}
        STATUS_IN_FLIGHT => return Err(GetQuoteError::InFlight),
        status => return Err(GetQuoteError::Failed(status)),
    }
    let out_len = u32::from_le_bytes([buffer[20], buffer[21], buffer[22], buffer[23]]);
    let end = HEADER_LEN
        .checked_add(out_len as usize)
        .filter(|&e| e <= buffer.len());
    match end {
        Some(end) if out_len > 0 => Ok(&buffer[HEADER_LEN..end]),
        _ => Err(GetQuoteError::BadLength(out_len)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response() {
        let mut buf = [0xEEu8; 4096];
        encode_request(&mut buf, &[0x81; TDREPORT_LEN]).unwrap();
        assert_eq!(
            &buf[..24],
            &[
                1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(buf[24], 0x81);
        assert_eq!(
            encode_request(&mut [0; 100], &[0; TDREPORT_LEN]),
            Err(GetQuoteError::BufferTooSmall(100))
        );
        // The host writes a 5-byte quote.
        buf[8..16].fill(0xFF);
        assert_eq!(decode_response(&buf), Err(GetQuoteError::InFlight));
        buf[8..16].fill(0);
        buf[20..24].copy_from_slice(&5u32.to_le_bytes());
        buf[24..29].copy_from_slice(b"quote");
        assert_eq!(decode_response(&buf), Ok(&b"quote"[..]));
        buf[20..24].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(decode_response(&buf), Err(GetQuoteError::BadLength(5000)));
        buf[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_response(&buf),
            Err(GetQuoteError::BadLength(u32::MAX))
        );
        buf[20..24].fill(0);
        assert_eq!(decode_response(&buf), Err(GetQuoteError::BadLength(0)));
        buf[8] = 0x01;
        buf[15] = 0x80;
        assert_eq!(
            decode_response(&buf),
            Err(GetQuoteError::Failed(0x8000_0000_0000_0001))
        );
        buf[0] = 2;
        assert_eq!(decode_response(&buf), Err(GetQuoteError::BadVersion(2)));
    }
}
