//! What the service needs from the machine, as traits: the model disk, stream sockets and a
//! clock. The kernel implements them over virtio-blk, virtio-vsock and the TSC
//! (`service::kernel`); the host tests implement them in memory.

use alloc::string::String;
use core::fmt;

/// Bytes per disk sector.
pub const SECTOR_SIZE: usize = 512;

/// The disk holding the sealed model (untrusted: it holds ciphertext only).
pub trait Disk {
    /// Size in bytes.
    fn capacity_bytes(&self) -> u64;
    /// Fills `buffer` (whole sectors) starting at `sector`.
    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), String>;
}

/// Why a socket operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketError {
    /// The peer closed (or reset) the connection; nothing more will arrive.
    Closed,
    /// The device failed.
    Device(String),
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::Device(why) => write!(f, "socket device: {why}"),
        }
    }
}

/// Listening stream sockets, polled (no blocking call anywhere).
pub trait Sockets {
    /// Identifies one connection.
    type Id: Copy + Eq + fmt::Debug;
    /// Moves pending device work along; a device failure ends the service loop.
    fn poll(&mut self) -> Result<(), SocketError>;
    /// A newly accepted connection, if any.
    fn accept(&mut self) -> Option<Self::Id>;
    /// Received bytes into `buffer`; `Ok(0)` when none are waiting.
    fn recv(&mut self, id: Self::Id, buffer: &mut [u8]) -> Result<usize, SocketError>;
    /// Sends as much of `data` as the peer can take now; returns how much.
    fn send(&mut self, id: Self::Id, data: &[u8]) -> Result<usize, SocketError>;
    /// Ends the connection (orderly where possible); unsent data is dropped.
    fn close(&mut self, id: Self::Id);
}

/// A monotonic clock for cadence and timings (never for security decisions, DESIGN §15).
pub trait Clock {
    /// Microseconds since an arbitrary fixed point.
    fn now_micros(&self) -> u64;
    /// Nanoseconds since an arbitrary fixed point, for the benchmark's timings (a clock with
    /// finer resolution than microseconds overrides this).
    fn now_nanos(&self) -> u64 {
        self.now_micros().saturating_mul(1000)
    }
}
