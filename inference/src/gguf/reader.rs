//! A bounds-checked little-endian cursor over the file bytes.

use super::error::GgufError;

/// Longest string the reader accepts (chat templates are the longest legitimate strings).
pub const MAX_STRING_LEN: u64 = 1 << 24;

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The bytes read since position `start` (empty if `start` is not behind the cursor).
    pub fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.data.get(start..self.pos).unwrap_or(&[])
    }

    pub fn bytes(&mut self, len: u64) -> Result<&'a [u8], GgufError> {
        let truncated = GgufError::Truncated {
            offset: self.pos,
            needed: len,
        };
        let len = usize::try_from(len).map_err(|_| truncated.clone())?;
        if len > self.remaining() {
            return Err(truncated);
        }
        let out = &self.data[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let bytes = self.bytes(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: u64 length then UTF-8 bytes (no terminator).
    pub fn string(&mut self) -> Result<&'a str, GgufError> {
        let offset = self.pos;
        let len = self.u64()?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::StringTooLong { offset, len });
        }
        let bytes = self.bytes(len)?;
        core::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 { offset })
    }
}
