//! One stream connection's bookkeeping: the receive buffer and both directions of credit
//! (virtio 1.2 §5.10.6.3). Counters wrap, as the specification defines them; the peer's
//! claims are never trusted to be consistent: a peer claiming to have consumed more than was
//! sent gets no credit rather than a huge one, and a peer sending more than the credit it was
//! given breaks the connection instead of overrunning the buffer. (`virtio-drivers`' connection
//! manager does this arithmetic with plain `u32` operators, which panic on these values in
//! debug builds and grant wrapped-around credit in release builds.)

use alloc::collections::VecDeque;

/// Who and where: the peer's address and the local port it connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionId {
    /// Peer context ID.
    pub peer_cid: u64,
    /// Peer port.
    pub peer_port: u32,
    /// Local (guest) port.
    pub local_port: u32,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer shut the connection down in an orderly way.
    Shutdown,
    /// The peer reset it.
    Reset,
    /// The peer broke the protocol (sent past its credit); Ward reset it.
    ProtocolViolation,
    /// The device failed.
    DeviceFailed,
    /// Closed locally.
    Local,
}

/// The peer sent more than the credit it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditOverrun;

/// A connection's buffers and counters.
#[derive(Debug)]
pub struct Connection {
    /// Its address.
    pub id: ConnectionId,
    received: VecDeque<u8>,
    buf_alloc: u32,
    fwd_cnt: u32,
    advertised_fwd_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    tx_cnt: u32,
    /// A credit request is outstanding.
    pub credit_requested: bool,
    /// The peer will send no more data.
    pub peer_done_sending: bool,
    /// The peer will receive no more data.
    pub peer_done_receiving: bool,
    /// Set once the connection is over; data already received can still be read.
    pub closed: Option<CloseReason>,
}

impl Connection {
    /// A connection with a receive buffer of `buf_alloc` bytes, the peer's credit as it
    /// announced it.
    pub fn new(id: ConnectionId, buf_alloc: u32, peer_buf_alloc: u32, peer_fwd_cnt: u32) -> Self {
        Self {
            id,
            received: VecDeque::new(),
            buf_alloc,
            fwd_cnt: 0,
            advertised_fwd_cnt: 0,
            peer_buf_alloc,
            peer_fwd_cnt,
            tx_cnt: 0,
            credit_requested: false,
            peer_done_sending: false,
            peer_done_receiving: false,
            closed: None,
        }
    }

    /// Records the credit the peer states in every packet.
    pub fn peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// Bytes the peer can take now.
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Counts `len` bytes as sent.
    pub fn sent(&mut self, len: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(len);
    }

    /// Takes received payload; refuses bytes beyond the space this side advertised.
    pub fn receive(&mut self, payload: &[u8]) -> Result<(), CreditOverrun> {
        let room = (self.buf_alloc as usize).saturating_sub(self.received.len());
        if payload.len() > room {
            return Err(CreditOverrun);
        }
        self.received.extend(payload);
        Ok(())
    }

    /// Moves buffered bytes into `out`; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.received.len());
        for (slot, byte) in out.iter_mut().zip(self.received.drain(..count)) {
            *slot = byte;
        }
        self.fwd_cnt = self.fwd_cnt.wrapping_add(count as u32);
        count
    }

    /// Bytes waiting to be read.
    pub fn buffered(&self) -> usize {
        self.received.len()
    }

    /// Whether the peer should be told about freed space (half the buffer freed since the
    /// last header it saw).
    pub fn wants_credit_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.advertised_fwd_cnt) >= self.buf_alloc / 2
    }

    /// This side's credit for an outgoing header; records it as advertised.
    pub fn own_credit(&mut self) -> (u32, u32) {
        self.advertised_fwd_cnt = self.fwd_cnt;
        (self.buf_alloc, self.fwd_cnt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ConnectionId {
        ConnectionId {
            peer_cid: 2,
            peer_port: 1000,
            local_port: 5000,
        }
    }

    #[test]
    fn peer_credit_is_conservative() {
        let mut c = Connection::new(id(), 16, 100, 0);
        assert_eq!(c.peer_free(), 100);
        c.sent(60);
        assert_eq!(c.peer_free(), 40);
        c.peer_credit(100, 60);
        assert_eq!(c.peer_free(), 100);
        // A peer claiming to have consumed more than was sent gets nothing, not 4 GiB.
        c.peer_credit(100, 61);
        assert_eq!(c.peer_free(), 0);
        // Counters wrap without trouble.
        let mut w = Connection::new(id(), 16, 100, u32::MAX - 9);
        w.sent(u32::MAX - 9);
        w.sent(30);
        assert_eq!(w.peer_free(), 70);
        w.peer_credit(100, 20);
        assert_eq!(w.peer_free(), 100);
    }

    #[test]
    fn receive_buffer_respects_our_credit() {
        let mut c = Connection::new(id(), 8, 0, 0);
        assert!(c.receive(b"hello").is_ok());
        assert_eq!(c.receive(b"world"), Err(CreditOverrun));
        assert!(c.receive(b"abc").is_ok());
        let mut out = [0u8; 6];
        assert_eq!(c.read(&mut out), 6);
        assert_eq!(&out, b"helloa");
        assert!(c.wants_credit_update());
        assert_eq!(c.own_credit(), (8, 6));
        assert!(!c.wants_credit_update());
        assert_eq!(c.buffered(), 2);
        assert_eq!(c.read(&mut out), 2);
        assert_eq!(&out[..2], b"bc");
        assert_eq!(c.read(&mut out), 0);
    }
}
