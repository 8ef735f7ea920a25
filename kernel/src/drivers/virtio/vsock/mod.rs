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
pub use connection::ConnectionId;
use connection::{CloseReason, Connection};
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
