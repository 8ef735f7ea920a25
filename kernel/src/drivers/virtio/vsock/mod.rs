//! Stream sockets over virtio-vsock for the service: listen on guest ports, accept host
//! connections, and move bytes with non-blocking `recv`/`send` while credit, shutdown and reset
//! are handled here (virtio 1.2 §5.10.6).
//!
//! The host is untrusted: connection requests beyond [`MAX_CONNECTIONS`] are reset, packets for
//! unknown connections are answered with a reset, data beyond the credit this side advertised
//! resets the connection, and nothing a packet says is used before [`header::parse`] checked it.
//!
//! Use: [`Vsock::listen`], then call [`Vsock::poll`] regularly (it drains the device and answers
//! control packets), take new connections with [`Vsock::accept`], and use [`Vsock::recv`] /
//! [`Vsock::send`] / [`Vsock::close`] on them.

pub mod connection;
pub mod device;
pub mod header;

use super::deadline::Deadline;
use super::error::VirtioError;
use super::hal::PoolSource;
use super::pci::transport::VirtioTransport;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use connection::Connection;
pub use connection::{CloseReason, ConnectionId};
use core::fmt;
use device::{MAX_SEND_PAYLOAD, Packet, VsockDevice};
use header::{Op, SHUTDOWN_RECEIVE, SHUTDOWN_SEND};

/// Connections open at once; further requests are reset.
pub const MAX_CONNECTIONS: usize = 16;
/// Ports listened on at once.
pub const MAX_LISTEN_PORTS: usize = 8;
/// Receive buffer (and credit) per connection.
pub const CONNECTION_BUFFER: u32 = 64 * 1024;
/// How long a locally closed connection waits for the peer's reset.
const CLOSE_TIMEOUT_MS: u64 = 2_000;

/// Why a socket operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VsockError {
    /// No such connection (never existed, or already gone).
    NotConnected,
    /// The connection is over; everything received was read.
    Closed(CloseReason),
    /// Already listening on as many ports as allowed.
    TooManyPorts,
    /// The device failed.
    Device(VirtioError),
}

impl fmt::Display for VsockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected => f.write_str("no such vsock connection"),
            Self::Closed(reason) => write!(f, "vsock connection closed ({reason:?})"),
            Self::TooManyPorts => f.write_str("too many vsock listening ports"),
            Self::Device(error) => write!(f, "vsock device: {error}"),
        }
    }
}

impl From<VirtioError> for VsockError {
    fn from(error: VirtioError) -> Self {
        Self::Device(error)
    }
}

/// A locally closed connection waiting for the peer's reset.
struct Closing {
    id: ConnectionId,
    deadline: Deadline,
}

/// Listening stream sockets on one vsock device.
pub struct Vsock<S: PoolSource, T: VirtioTransport> {
    device: VsockDevice<S, T>,
    ports: Vec<u32>,
    connections: Vec<Connection>,
    accepted: VecDeque<ConnectionId>,
    closing: Vec<Closing>,
    dropped: usize,
}

impl<S: PoolSource, T: VirtioTransport> Vsock<S, T> {
    /// Initialises the device behind `transport`.
    pub fn new(transport: T) -> Result<Self, VirtioError> {
        Ok(Self {
            device: VsockDevice::new(transport)?,
            ports: Vec::new(),
            connections: Vec::new(),
            accepted: VecDeque::new(),
            closing: Vec::new(),
            dropped: 0,
        })
    }

    /// This guest's context ID.
    pub fn guest_cid(&self) -> u64 {
        self.device.guest_cid()
    }

    /// Changes how long one send may take (default [`device::SEND_TIMEOUT_MS`]).
    pub fn set_send_timeout_ms(&mut self, millis: u64) {
        self.device.set_send_timeout_ms(millis);
    }

    /// Packets dropped so far because they failed a check.
    pub fn dropped_packets(&self) -> usize {
        self.dropped
    }

    /// Accepts connections to `port` from now on.
    pub fn listen(&mut self, port: u32) -> Result<(), VsockError> {
        if self.ports.contains(&port) {
            return Ok(());
        }
        if self.ports.len() >= MAX_LISTEN_PORTS {
            return Err(VsockError::TooManyPorts);
        }
        self.ports.push(port);
        Ok(())
    }

    /// A connection accepted since the last call, if any.
    pub fn accept(&mut self) -> Option<ConnectionId> {
        self.accepted.pop_front()
    }

    /// Connections currently known (open, or closed with data left to read).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Drains the device: handles every received packet and closes connections whose peer did
    /// not answer a local close in time. Never blocks for longer than one send per packet.
    pub fn poll(&mut self) -> Result<(), VsockError> {
        let received = match self.device.poll() {
            Ok(received) => received,
            Err(error) => {
                self.fail_all();
                return Err(error.into());
            }
        };
        self.dropped += received.dropped;
        if received.transport_reset {
            for connection in &mut self.connections {
                connection.closed.get_or_insert(CloseReason::Reset);
            }
            self.closing.clear();
        }
        for packet in received.packets {
            self.handle(packet)?;
        }
        let mut index = 0;
        while index < self.closing.len() {
            if self.closing[index].deadline.expired() {
                let id = self.closing.swap_remove(index).id;
                self.send_control(id, Op::Reset, 0)?;
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    fn fail_all(&mut self) {
        for connection in &mut self.connections {
            connection.closed.get_or_insert(CloseReason::DeviceFailed);
        }
        self.closing.clear();
    }

    fn find(&self, id: ConnectionId) -> Option<usize> {
        self.connections.iter().position(|c| c.id == id)
    }

    fn handle(&mut self, packet: Packet) -> Result<(), VsockError> {
        let header = packet.header;
        let id = ConnectionId {
            peer_cid: header.src_cid,
            peer_port: header.src_port,
            local_port: header.dst_port,
        };
        if let Some(position) = self.closing.iter().position(|c| c.id == id) {
            // The peer's answer to a local close (or anything else): the connection is over.
            self.closing.swap_remove(position);
            if packet.op != Op::Reset {
                self.send_control(id, Op::Reset, 0)?;
            }
            return Ok(());
        }
        let Some(index) = self.find(id) else {
            return match packet.op {
                Op::Request => self.handle_request(id, header.buf_alloc, header.fwd_cnt),
                Op::Reset => Ok(()),
                _ => self.send_control(id, Op::Reset, 0),
            };
        };
        let connection = &mut self.connections[index];
        connection.peer_credit(header.buf_alloc, header.fwd_cnt);
        match packet.op {
            Op::ReadWrite => {
                if connection.closed.is_some() || connection.peer_done_sending {
                    return Ok(());
                }
                if connection.receive(&packet.payload).is_err() {
                    connection.closed = Some(CloseReason::ProtocolViolation);
                    return self.send_control(id, Op::Reset, 0);
                }
            }
            Op::CreditUpdate => connection.credit_requested = false,
            Op::CreditRequest => return self.send_control(id, Op::CreditUpdate, 0),
            Op::Shutdown => {
                connection.peer_done_receiving |= header.flags & SHUTDOWN_RECEIVE != 0;
                connection.peer_done_sending |= header.flags & SHUTDOWN_SEND != 0;
                if connection.peer_done_receiving && connection.peer_done_sending {
                    connection.closed.get_or_insert(CloseReason::Shutdown);
                    return self.send_control(id, Op::Reset, 0);
                }
            }
            Op::Reset => {
                connection.closed.get_or_insert(CloseReason::Reset);
            }
            // A second request for a live connection, or a response to a connect Ward never
            // made: the peer is confused; end the connection.
            Op::Request | Op::Response => {
                connection
                    .closed
                    .get_or_insert(CloseReason::ProtocolViolation);
                return self.send_control(id, Op::Reset, 0);
            }
        }
        Ok(())
    }

    fn handle_request(
        &mut self,
        id: ConnectionId,
        peer_buf_alloc: u32,
        peer_fwd_cnt: u32,
    ) -> Result<(), VsockError> {
        if !self.ports.contains(&id.local_port) || self.connections.len() >= MAX_CONNECTIONS {
            return self.send_control(id, Op::Reset, 0);
        }
        self.connections.push(Connection::new(
            id,
            CONNECTION_BUFFER,
            peer_buf_alloc,
            peer_fwd_cnt,
        ));
        self.send_control(id, Op::Response, 0)?;
        self.accepted.push_back(id);
        Ok(())
    }

    /// Sends a packet without payload, carrying the connection's credit when it exists.
    fn send_control(&mut self, id: ConnectionId, op: Op, flags: u32) -> Result<(), VsockError> {
        let mut header = self
            .device
            .header(id.peer_cid, id.peer_port, id.local_port, op);
        header.flags = flags;
        if let Some(index) = self.find(id) {
            (header.buf_alloc, header.fwd_cnt) = self.connections[index].own_credit();
        }
        self.device.send(&header, &[]).map_err(|error| {
            self.fail_all();
            error.into()
        })
    }

    /// Whether the connection has ended (and why), without reading: `Ok(None)` while it is
    /// open. A closed connection stays known until [`Self::recv`] reports it (or
    /// [`Self::close`]).
    pub fn closed(&self, id: ConnectionId) -> Result<Option<CloseReason>, VsockError> {
        let index = self.find(id).ok_or(VsockError::NotConnected)?;
        Ok(self.connections[index].closed)
    }

    /// Bytes received and not yet read.
    pub fn pending(&self, id: ConnectionId) -> Result<usize, VsockError> {
        let index = self.find(id).ok_or(VsockError::NotConnected)?;
        Ok(self.connections[index].buffered())
    }

    /// Reads received bytes into `buffer`; `Ok(0)` when none are waiting yet. Once the peer has
    /// closed and everything was read, returns `Closed` and forgets the connection.
    pub fn recv(&mut self, id: ConnectionId, buffer: &mut [u8]) -> Result<usize, VsockError> {
        let index = self.find(id).ok_or(VsockError::NotConnected)?;
        let connection = &mut self.connections[index];
        let count = connection.read(buffer);
        if count > 0 {
            if connection.closed.is_none() && connection.wants_credit_update() {
                self.send_control(id, Op::CreditUpdate, 0)?;
            }
            return Ok(count);
        }
        if buffer.is_empty() {
            return Ok(0);
        }
        let connection = &self.connections[index];
        let ended = connection.closed.or(connection
            .peer_done_sending
            .then_some(CloseReason::Shutdown));
        match ended {
            Some(reason) => {
                if connection.closed.is_some() {
                    self.connections.swap_remove(index);
                }
                Err(VsockError::Closed(reason))
            }
            None => Ok(0),
        }
    }

    /// Sends as much of `data` as the peer's credit allows; returns the bytes taken (0 when
    /// the peer has no room yet: a credit request is sent and the caller tries again later).
    pub fn send(&mut self, id: ConnectionId, data: &[u8]) -> Result<usize, VsockError> {
        let index = self.find(id).ok_or(VsockError::NotConnected)?;
        let connection = &mut self.connections[index];
        if let Some(reason) = connection.closed {
            return Err(VsockError::Closed(reason));
        }
        if connection.peer_done_receiving {
            return Err(VsockError::Closed(CloseReason::Shutdown));
        }
        let room = connection.peer_free() as usize;
        let count = data.len().min(room).min(MAX_SEND_PAYLOAD);
        if count == 0 {
            if !data.is_empty() && !connection.credit_requested {
                connection.credit_requested = true;
                self.send_control(id, Op::CreditRequest, 0)?;
            }
            return Ok(0);
        }
        let mut header =
            self.device
                .header(id.peer_cid, id.peer_port, id.local_port, Op::ReadWrite);
        header.len = count as u32;
        (header.buf_alloc, header.fwd_cnt) = connection.own_credit();
        connection.sent(count as u32);
        match self.device.send(&header, &data[..count]) {
            Ok(()) => Ok(count),
            Err(error) => {
                self.fail_all();
                Err(error.into())
            }
        }
    }

    /// Closes the connection: an orderly shutdown now, a reset if the peer has not answered
    /// within a short time. Unread data is discarded.
    pub fn close(&mut self, id: ConnectionId) -> Result<(), VsockError> {
        let index = self.find(id).ok_or(VsockError::NotConnected)?;
        let connection = self.connections.swap_remove(index);
        if connection.closed.is_some() {
            return Ok(());
        }
        self.send_control(id, Op::Shutdown, SHUTDOWN_RECEIVE | SHUTDOWN_SEND)?;
        self.closing.push(Closing {
            id,
            deadline: Deadline::after_millis(CLOSE_TIMEOUT_MS),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The socket layer against a fake device playing the host.
    use super::device::RX_BUFFER_SIZE;
    use super::header::{HEADER_LEN, Header, TYPE_STREAM};
    use super::*;
    use crate::drivers::virtio::fake::{Completion, FakeState, FakeTransport};
    use crate::drivers::virtio::hal::test_pool::{LOCK, TestPool};
    use crate::drivers::virtio::negotiate::F_VERSION_1;
    use alloc::boxed::Box;
    use alloc::rc::Rc;
    use alloc::vec;
    use core::cell::RefCell;
    use virtio_drivers::transport::DeviceType;

    const CID: u64 = 3;
    const PORT: u32 = 5000;

    type Sent = Rc<RefCell<Vec<(Header, Vec<u8>)>>>;

    struct Host {
        state: Rc<RefCell<FakeState>>,
        sent: Sent,
    }

    impl Host {
        fn packet(
            &self,
            op: Op,
            src_port: u32,
            payload: &[u8],
            flags: u32,
            buf_alloc: u32,
            fwd_cnt: u32,
        ) -> Vec<u8> {
            let header = Header {
                src_cid: 2,
                dst_cid: CID,
                src_port,
                dst_port: PORT,
                len: payload.len() as u32,
                socket_type: TYPE_STREAM,
                op: op as u16,
                flags,
                buf_alloc,
                fwd_cnt,
            };
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(payload);
            bytes
        }

        fn inject(&self, bytes: &[u8]) {
            assert!(
                self.state.borrow_mut().complete(0, bytes, None, None),
                "no RX buffer posted"
            );
        }

        fn send(&self, op: Op, src_port: u32, payload: &[u8]) {
            self.inject(&self.packet(op, src_port, payload, 0, 65536, 0));
        }

        fn last(&self) -> (Header, Vec<u8>) {
            self.sent.borrow().last().cloned().expect("nothing sent")
        }

        fn ops(&self) -> Vec<u16> {
            self.sent.borrow().iter().map(|(h, _)| h.op).collect()
        }
    }

    fn set_up() -> (Host, Vsock<TestPool, FakeTransport>) {
        let state = FakeState::new(F_VERSION_1, CID.to_le_bytes().to_vec(), 3, 16);
        let sent: Sent = Rc::default();
        let record = sent.clone();
        state.borrow_mut().responder = Some(Box::new(
            move |queue: u16, readable: &[u8], _room: usize| {
                if queue != 1 {
                    return Completion::Pending;
                }
                let (header, _, payload) = header::parse(readable, 2)
                    .unwrap_or_else(|e| panic!("driver sent a bad packet: {e}"));
                record.borrow_mut().push((header, payload.to_vec()));
                Completion::write(Vec::new())
            },
        ));
        let transport = FakeTransport {
            state: state.clone(),
            device_type: DeviceType::Socket,
        };
        let mut vsock = Vsock::new(transport).expect("device comes up");
        vsock.listen(PORT).unwrap();
        (Host { state, sent }, vsock)
    }

    #[test]
    fn accepts_echoes_and_closes_in_order() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (host, mut vsock) = set_up();
        assert_eq!(vsock.guest_cid(), CID);
        host.send(Op::Request, 1000, b"");
        vsock.poll().unwrap();
        let (response, _) = host.last();
        assert_eq!(
            (response.op, response.dst_port, response.src_port),
            (Op::Response as u16, 1000, PORT)
        );
        assert_eq!(response.buf_alloc, CONNECTION_BUFFER);
        let id = vsock.accept().expect("accepted");
        assert_eq!((id.peer_cid, id.peer_port, id.local_port), (2, 1000, PORT));
        assert_eq!(vsock.accept(), None);

        host.send(Op::ReadWrite, 1000, b"hello");
        vsock.poll().unwrap();
        let mut buffer = [0u8; 16];
        assert_eq!(vsock.recv(id, &mut buffer), Ok(5));
        assert_eq!(&buffer[..5], b"hello");
        assert_eq!(vsock.recv(id, &mut buffer), Ok(0));
        assert_eq!(vsock.send(id, b"world"), Ok(5));
        let (data, payload) = host.last();
        assert_eq!(
            (data.op, data.len, data.fwd_cnt),
            (Op::ReadWrite as u16, 5, 5)
        );
        assert_eq!(payload, b"world");

        host.inject(&host.packet(
            Op::Shutdown,
            1000,
            b"",
            SHUTDOWN_RECEIVE | SHUTDOWN_SEND,
            65536,
            5,
        ));
        vsock.poll().unwrap();
        assert_eq!(vsock.closed(id), Ok(Some(CloseReason::Shutdown)));
        assert_eq!(vsock.pending(id), Ok(0));
        assert_eq!(host.last().0.op, Op::Reset as u16);
        assert_eq!(
            vsock.recv(id, &mut buffer),
            Err(VsockError::Closed(CloseReason::Shutdown))
        );
        assert_eq!(vsock.recv(id, &mut buffer), Err(VsockError::NotConnected));
        assert_eq!(vsock.connection_count(), 0);
    }

    #[test]
    fn refuses_unlistened_ports_strangers_and_too_many_connections() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (host, mut vsock) = set_up();
        let mut other_port = host.packet(Op::Request, 1, b"", 0, 65536, 0);
        other_port[20..24].copy_from_slice(&(PORT + 1).to_le_bytes());
        host.inject(&other_port);
        // Data for a connection that does not exist.
        host.send(Op::ReadWrite, 2, b"who?");
        vsock.poll().unwrap();
        assert_eq!(host.ops(), [Op::Reset as u16, Op::Reset as u16]);
        assert_eq!(vsock.accept(), None);

        for port in 0..=MAX_CONNECTIONS as u32 {
            host.send(Op::Request, 100 + port, b"");
            vsock.poll().unwrap();
        }
        let ops = host.ops();
        assert_eq!(
            ops.iter().filter(|&&op| op == Op::Response as u16).count(),
            MAX_CONNECTIONS
        );
        assert_eq!(
            *ops.last().unwrap(),
            Op::Reset as u16,
            "one over the limit is reset"
        );
        assert_eq!(vsock.connection_count(), MAX_CONNECTIONS);
    }

    #[test]
    fn hostile_packets_are_dropped_and_bad_ids_disable_the_device() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (host, mut vsock) = set_up();
        let honest = host.packet(Op::Request, 7, b"", 0, 65536, 0);
        // A used length past the buffer, then a header claiming more payload than arrived.
        assert!(host.state.borrow_mut().complete(
            0,
            &honest,
            Some(RX_BUFFER_SIZE as u32 + 1),
            None
        ));
        let mut lying = host.packet(Op::ReadWrite, 7, b"abc", 0, 65536, 0);
        lying[24..28].copy_from_slice(&100u32.to_le_bytes());
        host.inject(&lying);
        let mut unknown_op = honest.clone();
        unknown_op[30] = 9;
        host.inject(&unknown_op);
        vsock.poll().unwrap();
        assert_eq!(vsock.dropped_packets(), 3);
        assert!(host.sent.borrow().is_empty());
        // Still working.
        host.inject(&honest);
        vsock.poll().unwrap();
        assert!(vsock.accept().is_some());
        // A used id naming no posted buffer.
        assert!(host.state.borrow_mut().complete(0, &honest, None, Some(9)));
        assert_eq!(
            vsock.poll(),
            Err(VsockError::Device(VirtioError::UnexpectedUsedId { id: 9 }))
        );
        assert_eq!(
            vsock.poll(),
            Err(VsockError::Device(VirtioError::DeviceFailed))
        );
    }

    #[test]
    fn credit_is_respected_both_ways() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (host, mut vsock) = set_up();
        // The peer has room for 10 bytes.
        host.inject(&host.packet(Op::Request, 9, b"", 0, 10, 0));
        vsock.poll().unwrap();
        let id = vsock.accept().unwrap();
        assert_eq!(vsock.send(id, &[1; 20]), Ok(10));
        assert_eq!(vsock.send(id, &[1; 20]), Ok(0));
        assert_eq!(host.last().0.op, Op::CreditRequest as u16);
        assert_eq!(vsock.send(id, &[1; 20]), Ok(0));
        assert_eq!(
            host.sent.borrow().len(),
            3,
            "one credit request, not one per try"
        );
        host.inject(&host.packet(Op::CreditUpdate, 9, b"", 0, 10, 10));
        vsock.poll().unwrap();
        assert_eq!(vsock.send(id, &[1; 20]), Ok(10));

        // The peer ignores the 64 KiB credit Ward gave it.
        let chunk = vec![7u8; RX_BUFFER_SIZE - HEADER_LEN];
        let mut sent = 0;
        while vsock.connection_count() == 1 && sent <= CONNECTION_BUFFER as usize {
            host.send(Op::ReadWrite, 9, &chunk);
            vsock.poll().unwrap();
            sent += chunk.len();
            if host.last().0.op == Op::Reset as u16 {
                break;
            }
        }
        assert_eq!(host.last().0.op, Op::Reset as u16);
        // What fitted can still be read, then the reason is given.
        let mut buffer = vec![0u8; CONNECTION_BUFFER as usize + 1];
        let fitted = vsock.recv(id, &mut buffer).unwrap();
        assert!(fitted <= CONNECTION_BUFFER as usize && fitted > 0);
        assert_eq!(
            vsock.recv(id, &mut buffer),
            Err(VsockError::Closed(CloseReason::ProtocolViolation))
        );
    }

    #[test]
    fn a_device_that_never_takes_a_send_fails_it() {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (host, mut vsock) = set_up();
        host.send(Op::Request, 11, b"");
        vsock.poll().unwrap();
        let id = vsock.accept().unwrap();
        vsock.set_send_timeout_ms(20);
        host.state.borrow_mut().responder = Some(Box::new(|_q: u16, _r: &[u8], _room: usize| {
            Completion::Pending
        }));
        assert!(matches!(
            vsock.send(id, b"stuck"),
            Err(VsockError::Device(VirtioError::Timeout { .. }))
        ));
        let mut buffer = [0u8; 4];
        assert_eq!(
            vsock.recv(id, &mut buffer),
            Err(VsockError::Closed(CloseReason::DeviceFailed))
        );
        assert_eq!(
            vsock.poll(),
            Err(VsockError::Device(VirtioError::DeviceFailed))
        );
    }
}
