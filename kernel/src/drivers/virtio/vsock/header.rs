//! The virtio-vsock packet header (virtio 1.2 §5.10.6) and the checks every received packet
//! passes before anything looks at it: long enough for a header, a payload length that fits in
//! what the device says it wrote, a known operation, the stream type, addressed to this guest,
//! and no payload on control packets.

use core::fmt;

/// Header size in bytes.
pub const HEADER_LEN: usize = 44;
/// `type`: stream socket (the only type Ward speaks).
pub const TYPE_STREAM: u16 = 1;
/// Shutdown flag: the sender will receive no more data.
pub const SHUTDOWN_RECEIVE: u32 = 1;
/// Shutdown flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// Packet operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    /// Connection request.
    Request = 1,
    /// Connection accepted.
    Response = 2,
    /// Connection reset.
    Reset = 3,
    /// Orderly shutdown (flags say which directions).
    Shutdown = 4,
    /// Stream data.
    ReadWrite = 5,
    /// The sender's credit.
    CreditUpdate = 6,
    /// Asks for the receiver's credit.
    CreditRequest = 7,
}

impl Op {
    fn from_raw(raw: u16) -> Option<Self> {
        Some(match raw {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Reset,
            4 => Self::Shutdown,
            5 => Self::ReadWrite,
            6 => Self::CreditUpdate,
            7 => Self::CreditRequest,
            _ => return None,
        })
    }
}

/// A decoded header (little-endian on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Sender's context ID.
    pub src_cid: u64,
    /// Receiver's context ID.
    pub dst_cid: u64,
    /// Sender's port.
    pub src_port: u32,
    /// Receiver's port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub socket_type: u16,
    /// Operation (raw on encode, checked on decode).
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// Sender's receive-buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer so far (wrapping).
    pub fwd_cnt: u32,
}

impl Header {
    /// Wire form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        out[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        out[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        out[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        out[24..28].copy_from_slice(&self.len.to_le_bytes());
        out[28..30].copy_from_slice(&self.socket_type.to_le_bytes());
        out[30..32].copy_from_slice(&self.op.to_le_bytes());
        out[32..36].copy_from_slice(&self.flags.to_le_bytes());
        out[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        out[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            socket_type: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }
}

/// Why a received packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than a header.
    Short(usize),
    /// The header's payload length exceeds the bytes received.
    PayloadLength {
        /// What the header says.
        len: u32,
        /// Bytes after the header.
        available: usize,
    },
    /// Unknown operation.
    BadOp(u16),
    /// Not a stream packet.
    BadType(u16),
    /// Addressed to another context.
    NotForUs(u64),
    /// A control packet carrying payload.
    UnexpectedPayload(Op),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short(len) => write!(f, "packet of {len} bytes is shorter than its header"),
            Self::PayloadLength { len, available } => write!(
                f,
                "header claims {len} payload bytes but only {available} arrived"
            ),
            Self::BadOp(op) => write!(f, "unknown operation {op}"),
            Self::BadType(t) => write!(f, "socket type {t} is not a stream"),
            Self::NotForUs(cid) => write!(f, "addressed to context {cid}"),
            Self::UnexpectedPayload(op) => write!(f, "{op:?} packet carries payload"),
        }
    }
}

/// A checked packet: its header, its operation and its payload (a slice of `bytes`).
pub fn parse(bytes: &[u8], guest_cid: u64) -> Result<(Header, Op, &[u8]), PacketError> {
    let head: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(PacketError::Short(bytes.len()))?;
    let header = Header::decode(head);
    let available = bytes.len() - HEADER_LEN;
    let payload = usize::try_from(header.len)
        .ok()
        .and_then(|len| bytes.get(HEADER_LEN..HEADER_LEN.checked_add(len)?))
        .ok_or(PacketError::PayloadLength {
            len: header.len,
            available,
        })?;
    let op = Op::from_raw(header.op).ok_or(PacketError::BadOp(header.op))?;
    if header.socket_type != TYPE_STREAM {
        return Err(PacketError::BadType(header.socket_type));
    }
    if header.dst_cid != guest_cid {
        return Err(PacketError::NotForUs(header.dst_cid));
    }
    if op != Op::ReadWrite && !payload.is_empty() {
        return Err(PacketError::UnexpectedPayload(op));
    }
    Ok((header, op, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn packet(op: u16, len: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            src_cid: 2,
            dst_cid: 3,
            src_port: 1234,
            dst_port: 5000,
            len,
            socket_type: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 65536,
            fwd_cnt: 7,
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn round_trip_and_payload() {
        let bytes = packet(5, 3, b"abc");
        let (header, op, payload) = parse(&bytes, 3).unwrap();
        assert_eq!(op, Op::ReadWrite);
        assert_eq!(payload, b"abc");
        assert_eq!(
            (header.src_port, header.dst_port, header.fwd_cnt),
            (1234, 5000, 7)
        );
        // Extra bytes after the stated payload are not part of it.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"zz");
        assert_eq!(parse(&longer, 3).unwrap().2, b"abc");
    }

    #[test]
    fn hostile_packets_are_refused() {
        assert_eq!(parse(&[0; 43], 3), Err(PacketError::Short(43)));
        assert_eq!(
            parse(&packet(5, 4, b"abc"), 3),
            Err(PacketError::PayloadLength {
                len: 4,
                available: 3
            })
        );
        assert_eq!(
            parse(&packet(5, u32::MAX, b"abc"), 3),
            Err(PacketError::PayloadLength {
                len: u32::MAX,
                available: 3
            })
        );
        assert_eq!(parse(&packet(0, 0, b""), 3), Err(PacketError::BadOp(0)));
        assert_eq!(parse(&packet(8, 0, b""), 3), Err(PacketError::BadOp(8)));
        assert_eq!(parse(&packet(1, 0, b""), 4), Err(PacketError::NotForUs(3)));
        assert_eq!(
            parse(&packet(1, 1, b"x"), 3),
            Err(PacketError::UnexpectedPayload(Op::Request))
        );
        let mut seqpacket = packet(1, 0, b"");
        seqpacket[28] = 2;
        assert_eq!(parse(&seqpacket, 3), Err(PacketError::BadType(2)));
    }
}
