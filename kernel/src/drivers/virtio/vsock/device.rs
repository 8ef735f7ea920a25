//! The virtio-vsock device's queues (virtio 1.2 §5.10): receive buffers kept posted, one
//! packet sent at a time, and the event queue.
//!
//! Built on `virtio-drivers`' split virtqueue instead of its `VirtIOSocket`, whose receive path
//! (`OwningQueue`) indexes its buffer array with the device's used id and slices the buffer with
//! the device's used length, both unchecked (a panic on a hostile value), and whose sends wait
//! without a time limit. Here the used id must name a receive buffer that is actually posted,
//! the used length must fit that buffer, every packet passes [`header::parse`], and sends time
//! out. A used-ring value that matches no posted buffer, or a send that never completes,
//! disables the device.

use super::header::{self, Header, Op};
use crate::drivers::virtio::deadline::Deadline;
use crate::drivers::virtio::error::VirtioError;
use crate::drivers::virtio::hal::{PoolHal, PoolSource};
use crate::drivers::virtio::negotiate;
use crate::drivers::virtio::pci::transport::VirtioTransport;
use alloc::vec;
use alloc::vec::Vec;
use virtio_drivers::BufferDirection;
use virtio_drivers::queue::VirtQueue;

const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
const EVENT_QUEUE: u16 = 2;
/// Receive buffers kept posted.
const RX_QUEUE_SIZE: usize = 8;
/// Header + payload descriptors of one send, with room to spare.
const TX_QUEUE_SIZE: usize = 4;
const EVENT_QUEUE_SIZE: usize = 2;
/// Four pages per receive buffer: fewer, larger packets are what makes vsock fast (each
/// packet costs a round trip through the host's vsock daemon).
pub const RX_BUFFER_SIZE: usize = 16 * 1024;
/// Largest payload sent in one packet.
pub const MAX_SEND_PAYLOAD: usize = 16 * 1024;
/// `struct virtio_vsock_event` is one 32-bit id.
const EVENT_SIZE: usize = 4;
/// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
const EVENT_TRANSPORT_RESET: u32 = 0;
/// How long the device may take to consume one sent packet.
pub const SEND_TIMEOUT_MS: u64 = 5_000;
/// Highest usable guest CID (0xffff_ffff is "any").
const MAX_GUEST_CID: u64 = 0xffff_fffe;

/// A received packet that passed every check.
#[derive(Debug)]
pub struct Packet {
    /// Its header.
    pub header: Header,
    /// Its operation.
    pub op: Op,
    /// Its payload (private copy).
    pub payload: Vec<u8>,
}

/// What one poll of the receive side found.
#[derive(Debug, Default)]
pub struct Received {
    /// Valid packets, in arrival order.
    pub packets: Vec<Packet>,
    /// Packets dropped because they failed a check.
    pub dropped: usize,
    /// The device reset its transport: every connection is gone.
    pub transport_reset: bool,
}

/// A virtio-vsock device.
pub struct VsockDevice<S: PoolSource, T: VirtioTransport> {
    transport: T,
    rx: VirtQueue<PoolHal<S>, RX_QUEUE_SIZE>,
    tx: VirtQueue<PoolHal<S>, TX_QUEUE_SIZE>,
    event: VirtQueue<PoolHal<S>, EVENT_QUEUE_SIZE>,
    /// Posted receive buffers by token (= head descriptor index).
    rx_buffers: Vec<Option<Vec<u8>>>,
    event_buffers: Vec<Option<Vec<u8>>>,
    guest_cid: u64,
    failed: bool,
    send_timeout_ms: u64,
}

/// Checks the guest CID from the configuration space.
pub fn check_guest_cid(cid: u64) -> Result<u64, VirtioError> {
    if (3..=MAX_GUEST_CID).contains(&cid) {
        Ok(cid)
    } else {
        Err(VirtioError::BadConfig {
            field: "guest_cid",
            value: cid,
        })
    }
}

impl<S: PoolSource, T: VirtioTransport> Drop for VsockDevice<S, T> {
    fn drop(&mut self) {
        // Before the queues' rings return to the pool.
        negotiate::abandon(&mut self.transport);
    }
}

impl<S: PoolSource, T: VirtioTransport> VsockDevice<S, T> {
    /// Initialises the device and posts its receive and event buffers. On any error the device
    /// is abandoned (reset) before the rings already set up go back to the pool.
    pub fn new(mut transport: T) -> Result<Self, VirtioError> {
        negotiate::begin(&mut transport, 0)?;
        macro_rules! check {
            ($e:expr) => {
                match $e {
                    Ok(value) => value,
                    Err(error) => {
                        negotiate::abandon(&mut transport);
                        return Err(error.into());
                    }
                }
            };
        }
        let cid = check!(
            transport
                .read_consistent(|| {
                    let low: u32 = transport.read_config_space(0)?;
                    let high: u32 = transport.read_config_space(4)?;
                    Ok((u64::from(high) << 32) | u64::from(low))
                })
                .map_err(|e| match e {
                    virtio_drivers::Error::IoError => VirtioError::ConfigUnstable,
                    other => VirtioError::Queue(other),
                })
        );
        let guest_cid = check!(check_guest_cid(cid));
        for (queue, size) in [
            (RX_QUEUE, RX_QUEUE_SIZE),
            (TX_QUEUE, TX_QUEUE_SIZE),
            (EVENT_QUEUE, EVENT_QUEUE_SIZE),
        ] {
            let max = transport.max_queue_size(queue);
            if max < size as u32 {
                check!(Err(VirtioError::QueueTooSmall { queue, max }));
            }
        }
        let rx = check!(VirtQueue::new(&mut transport, RX_QUEUE, false, false));
        let tx = check!(VirtQueue::new(&mut transport, TX_QUEUE, false, false));
        let event = check!(VirtQueue::new(&mut transport, EVENT_QUEUE, false, false));
        if transport.fault().is_some() {
            check!(Err(VirtioError::DeviceFailed));
        }
        // From here on, dropping `device` abandons the device first (see `Drop`).
        let mut device = Self {
            transport,
            rx,
            tx,
            event,
            rx_buffers: (0..RX_QUEUE_SIZE).map(|_| None).collect(),
            event_buffers: (0..EVENT_QUEUE_SIZE).map(|_| None).collect(),
            guest_cid,
            failed: false,
            send_timeout_ms: SEND_TIMEOUT_MS,
        };
        // Buffers go in before DRIVER_OK; the device is told about them after it.
        for _ in 0..RX_QUEUE_SIZE {
            device.post_rx(vec![0; RX_BUFFER_SIZE])?;
        }
        for _ in 0..EVENT_QUEUE_SIZE {
            device.post_event(vec![0; EVENT_SIZE])?;
        }
        negotiate::finish(&mut device.transport)?;
        device.transport.notify(RX_QUEUE);
        device.transport.notify(EVENT_QUEUE);
        Ok(device)
    }

    /// This guest's context ID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Changes how long one send may take (default [`SEND_TIMEOUT_MS`]).
    pub fn set_send_timeout_ms(&mut self, millis: u64) {
        self.send_timeout_ms = millis;
    }

    /// Whether the device has been given up on.
    pub fn has_failed(&self) -> bool {
        self.failed || self.transport.fault().is_some()
    }

    fn post_rx(&mut self, mut buffer: Vec<u8>) -> Result<(), VirtioError> {
        let _bounce = PoolHal::<S>::reserve(&[(&buffer, BufferDirection::DeviceToDriver)])?;
        // SAFETY: `PoolHal` hands the device a bounce copy, never `buffer`; the buffer is kept
        // in `rx_buffers` under its token, untouched, until `pop_used` for that token succeeds.
        let token = unsafe { self.rx.add(&[], &mut [&mut buffer])? };
        let slot = self
            .rx_buffers
            .get_mut(usize::from(token))
            .ok_or(VirtioError::UnexpectedUsedId { id: token.into() })?;
        *slot = Some(buffer);
        Ok(())
    }

    fn post_event(&mut self, mut buffer: Vec<u8>) -> Result<(), VirtioError> {
        let _bounce = PoolHal::<S>::reserve(&[(&buffer, BufferDirection::DeviceToDriver)])?;
        // SAFETY: as in `post_rx`, for the event queue and `event_buffers`.
        let token = unsafe { self.event.add(&[], &mut [&mut buffer])? };
        let slot = self
            .event_buffers
            .get_mut(usize::from(token))
            .ok_or(VirtioError::UnexpectedUsedId { id: token.into() })?;
        *slot = Some(buffer);
        Ok(())
    }

    /// Takes the used buffer at the head of `queue`'s used ring, checking that its id names a
    /// buffer actually posted. Returns the buffer and the length the device claims.
    fn pop_posted<const N: usize>(
        queue: &mut VirtQueue<PoolHal<S>, N>,
        buffers: &mut [Option<Vec<u8>>],
    ) -> Result<Option<(Vec<u8>, u32)>, VirtioError> {
        let Some(id) = queue.peek_used() else {
            return Ok(None);
        };
        let mut buffer = buffers
            .get_mut(usize::from(id))
            .and_then(Option::take)
            .ok_or(VirtioError::UnexpectedUsedId { id: id.into() })?;
        // SAFETY: `buffer` is the one posted under token `id`; `pop_used` re-reads the used
        // entry and refuses it (WrongToken) if the device changed it meanwhile.
        let len = unsafe { queue.pop_used(id, &[], &mut [&mut buffer])? };
        Ok(Some((buffer, len)))
    }

    /// Collects what the device has delivered: packets (checked), and transport resets.
    pub fn poll(&mut self) -> Result<Received, VirtioError> {
        if self.has_failed() {
            return Err(VirtioError::DeviceFailed);
        }
        let mut received = Received::default();
        // Bounded: a device cannot keep this loop going by refilling the ring.
        for _ in 0..RX_QUEUE_SIZE {
            let popped = Self::pop_posted(&mut self.rx, &mut self.rx_buffers);
            let Some((buffer, len)) = popped.inspect_err(|_| self.failed = true)? else {
                break;
            };
            match buffer.get(..len as usize) {
                Some(bytes) => match header::parse(bytes, self.guest_cid) {
                    Ok((header, op, payload)) => received.packets.push(Packet {
                        header,
                        op,
                        payload: payload.to_vec(),
                    }),
                    Err(error) => {
                        log::warn!("vsock: dropped a packet: {error}");
                        received.dropped += 1;
                    }
                },
                None => {
                    log::warn!(
                        "vsock: dropped a packet: used length {len} exceeds the {RX_BUFFER_SIZE}-byte buffer"
                    );
                    received.dropped += 1;
                }
            }
            self.post_rx(buffer).inspect_err(|_| self.failed = true)?;
        }
        if !received.packets.is_empty() || received.dropped > 0 {
            self.transport.notify(RX_QUEUE);
        }
        for _ in 0..EVENT_QUEUE_SIZE {
            let popped = Self::pop_posted(&mut self.event, &mut self.event_buffers);
            let Some((buffer, len)) = popped.inspect_err(|_| self.failed = true)? else {
                break;
            };
            if len as usize >= EVENT_SIZE && buffer.len() >= EVENT_SIZE {
                let id = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
                received.transport_reset |= id == EVENT_TRANSPORT_RESET;
            }
            self.post_event(buffer)
                .inspect_err(|_| self.failed = true)?;
            self.transport.notify(EVENT_QUEUE);
        }
        Ok(received)
    }

    /// Sends one packet (at most [`MAX_SEND_PAYLOAD`] bytes of payload) and waits until the
    /// device has consumed it.
    pub fn send(&mut self, header: &Header, payload: &[u8]) -> Result<(), VirtioError> {
        if self.has_failed() {
            return Err(VirtioError::DeviceFailed);
        }
        if payload.len() > MAX_SEND_PAYLOAD || header.len as usize != payload.len() {
            return Err(VirtioError::InvalidRequest("vsock payload length"));
        }
        let bytes = header.encode();
        let inputs: &[&[u8]] = if payload.is_empty() {
            &[&bytes]
        } else {
            &[&bytes, payload]
        };
        let reservations: Vec<(&[u8], BufferDirection)> = inputs
            .iter()
            .map(|&input| (input, BufferDirection::DriverToDevice))
            .collect();
        let _bounces = PoolHal::<S>::reserve(&reservations)?;
        // SAFETY: bounce copies go to the device; `bytes` and `payload` outlive the wait below,
        // and on a timeout the device is disabled so the queue is never popped with them again.
        let token = unsafe { self.tx.add(inputs, &mut [])? };
        if self.tx.should_notify() {
            self.transport.notify(TX_QUEUE);
        }
        let deadline = Deadline::after_millis(self.send_timeout_ms);
        while !self.tx.can_pop() {
            if deadline.expired() {
                self.failed = true;
                return Err(VirtioError::Timeout {
                    what: "a vsock send",
                    millis: deadline.millis(),
                });
            }
            core::hint::spin_loop();
        }
        // SAFETY: the same buffers as given to `add` for `token`. The used length is not
        // checked: a send has no device-writable buffer, so the device writes nothing.
        let popped = unsafe { self.tx.pop_used(token, inputs, &mut []) };
        popped.map(|_| ()).map_err(|error| {
            self.failed = true;
            match error {
                virtio_drivers::Error::WrongToken => VirtioError::UnexpectedUsedId {
                    id: self.tx.peek_used().map_or(u32::MAX, u32::from),
                },
                other => VirtioError::Queue(other),
            }
        })
    }

    /// The header for a packet from `local_port` to the peer, without payload length.
    pub fn header(&self, peer_cid: u64, peer_port: u32, local_port: u32, op: Op) -> Header {
        Header {
            src_cid: self.guest_cid,
            dst_cid: peer_cid,
            src_port: local_port,
            dst_port: peer_port,
            len: 0,
            socket_type: header::TYPE_STREAM,
            op: op as u16,
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_cids_are_checked() {
        assert_eq!(check_guest_cid(3), Ok(3));
        assert_eq!(check_guest_cid(0xffff_fffe), Ok(0xffff_fffe));
        for bad in [0, 1, 2, 0xffff_ffff, 1 << 32] {
            assert!(check_guest_cid(bad).is_err(), "{bad}");
        }
    }
}
