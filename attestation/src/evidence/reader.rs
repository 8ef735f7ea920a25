//! A bounds-checked little-endian cursor over untrusted bytes.

use super::EvidenceError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            offset: 0,
            what,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], EvidenceError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(EvidenceError::Truncated {
                what: self.what,
                needed: self.offset.saturating_add(len),
                available: self.bytes.len(),
            })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], EvidenceError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn skip(&mut self, len: usize) -> Result<(), EvidenceError> {
        self.take(len).map(|_| ())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, EvidenceError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, EvidenceError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, EvidenceError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(self) -> Result<(), EvidenceError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(EvidenceError::TrailingBytes {
                what: self.what,
                extra,
            }),
        }
    }
}
