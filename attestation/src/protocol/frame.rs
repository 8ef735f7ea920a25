//! Framing (docs/protocol.md §1): `length u32 BE || type u8 || body`, with the length checked
//! against the current state's limit before any body byte is buffered.

use super::ProtocolError;
use alloc::vec::Vec;

pub const FRAME_CLIENT_HELLO: u8 = 0x01;
pub const FRAME_SERVER_HELLO: u8 = 0x02;
pub const FRAME_RECORD: u8 = 0x03;
pub const FRAME_ABORT: u8 = 0x0F;

/// Bytes of the frame header (length + type).
pub const FRAME_HEADER_LEN: usize = 5;
/// Frame length (type + body) of a ClientHello.
pub const CLIENT_HELLO_FRAME_LEN: u32 = 68;
/// Largest ServerHello frame length.
pub const MAX_SERVER_HELLO_FRAME_LEN: u32 = 65_536;
/// Largest Abort frame length.
pub const MAX_ABORT_FRAME_LEN: u32 = 256;
/// Plaintext bytes of every record.
pub const RECORD_PLAINTEXT_LEN: usize = 256;
/// Frame length (type + ciphertext + tag) of every record.
pub const RECORD_FRAME_LEN: u32 = 1 + RECORD_PLAINTEXT_LEN as u32 + 16;
/// Bytes of every record on the wire.
pub const RECORD_WIRE_LEN: usize = 4 + RECORD_FRAME_LEN as usize;

/// Which frames the reader accepts now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Server before the handshake: one ClientHello.
    ClientHello,
    /// Client before the handshake: a ServerHello or an Abort.
    ServerHello,
    /// Both sides after the handshake: records only.
    Records,
}

impl Expect {
    /// Checks a frame header against this state's rules.
    pub fn check(self, frame_type: u8, len: u32) -> Result<(), ProtocolError> {
        if len == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        let exact = |expected: u32| {
            if len > expected {
                Err(ProtocolError::FrameTooLarge { len, max: expected })
            } else if len < expected {
                Err(ProtocolError::MalformedHello("ClientHello length"))
            } else {
                Ok(())
            }
        };
        let at_most = |max: u32| {
            if len > max {
                Err(ProtocolError::FrameTooLarge { len, max })
            } else {
                Ok(())
            }
        };
        match (self, frame_type) {
            (Self::ClientHello, FRAME_CLIENT_HELLO) => exact(CLIENT_HELLO_FRAME_LEN),
            (Self::ServerHello, FRAME_SERVER_HELLO) => at_most(MAX_SERVER_HELLO_FRAME_LEN),
            (Self::ServerHello, FRAME_ABORT) => at_most(MAX_ABORT_FRAME_LEN),
            (Self::Records, FRAME_RECORD) if len != RECORD_FRAME_LEN => {
                Err(ProtocolError::RecordSize {
                    len,
                    expected: RECORD_FRAME_LEN,
                })
            }
            (Self::Records, FRAME_RECORD) => Ok(()),
            _ => Err(ProtocolError::UnexpectedFrame { frame_type }),
        }
    }
}

/// One complete frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The 5 header bytes (they are a record's associated data).
    pub header: [u8; FRAME_HEADER_LEN],
    pub body: Vec<u8>,
}

impl Frame {
    pub fn frame_type(&self) -> u8 {
        self.header[4]
    }
}

/// Appends one frame to `out`.
pub fn write_frame(out: &mut Vec<u8>, frame_type: u8, body: &[u8]) {
    out.extend_from_slice(&frame_header(frame_type, body.len()));
    out.extend_from_slice(body);
}

/// The header for a frame with `body_len` body bytes.
pub fn frame_header(frame_type: u8, body_len: usize) -> [u8; FRAME_HEADER_LEN] {
    let len = (body_len as u32 + 1).to_be_bytes();
    [len[0], len[1], len[2], len[3], frame_type]
}

/// Reassembles frames from arbitrary pieces of a byte stream. Memory is bounded by the largest
/// frame the current [`Expect`] allows.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; FRAME_HEADER_LEN],
    header_have: usize,
    body: Vec<u8>,
    body_len: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes from `input` until one frame is complete or the input is used up.
    /// Returns how many bytes were consumed and the frame, if one completed.
    pub fn feed(
        &mut self,
        input: &[u8],
        expect: Expect,
    ) -> Result<(usize, Option<Frame>), ProtocolError> {
        let mut used = 0;
        if self.header_have < FRAME_HEADER_LEN {
            let take = (FRAME_HEADER_LEN - self.header_have).min(input.len());
            self.header[self.header_have..self.header_have + take].copy_from_slice(&input[..take]);
            self.header_have += take;
            used += take;
            if self.header_have < FRAME_HEADER_LEN {
                return Ok((used, None));
            }
            let len = u32::from_be_bytes([
                self.header[0],
                self.header[1],
                self.header[2],
                self.header[3],
            ]);
            // The limit is checked here, before a single body byte is stored.
            expect.check(self.header[4], len)?;
            self.body_len = len as usize - 1;
            self.body = Vec::with_capacity(self.body_len);
        }
        let take = (self.body_len - self.body.len()).min(input.len() - used);
        self.body.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.body.len() < self.body_len {
            return Ok((used, None));
        }
        let frame = Frame {
            header: self.header,
            body: core::mem::take(&mut self.body),
        };
        self.header_have = 0;
        self.body_len = 0;
        Ok((used, Some(frame)))
    }

    /// True when no partial frame is buffered.
    pub fn is_idle(&self) -> bool {
        self.header_have == 0
    }
}
