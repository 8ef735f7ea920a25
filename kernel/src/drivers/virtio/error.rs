//! Why a virtio operation failed. Every variant that carries a device value names it, so a log
//! line says what the (untrusted) device did.

use super::pci::PciSetupError;
use core::fmt;

/// A virtio driver error. Errors that leave a queue in an unknown state (timeouts, used-ring
/// values that match no request) also mark the device failed: later requests get
/// [`VirtioError::DeviceFailed`] instead of touching the queue again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioError {
    /// The PCI function could not be set up (capabilities, BARs).
    Pci(PciSetupError),
    /// The device does not offer VIRTIO_F_VERSION_1 (legacy-only devices are refused).
    LegacyOnly {
        /// The feature bits it offered.
        offered: u64,
    },
    /// The device cleared FEATURES_OK: it refused the features the driver accepted.
    FeaturesRefused {
        /// The features the driver wrote.
        accepted: u64,
    },
    /// The device reports DEVICE_NEEDS_RESET or FAILED.
    DeviceStatus(u8),
    /// The device did not finish a reset in time.
    ResetTimeout,
    /// The configuration generation kept changing while the driver read it.
    ConfigUnstable,
    /// A configuration value is out of the range the driver accepts.
    BadConfig {
        /// Which field.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// The device's queue is smaller than the driver needs (or absent).
    QueueTooSmall {
        /// Queue index.
        queue: u16,
        /// The maximum size the device offered.
        max: u32,
    },
    /// An error from `virtio-drivers` (queue full, DMA allocation, wrong token).
    Queue(virtio_drivers::Error),
    /// The shared pool has no room for a request's bounce buffers.
    PoolExhausted {
        /// Pages needed.
        pages: usize,
    },
    /// The device did not complete a request in time.
    Timeout {
        /// Which request.
        what: &'static str,
        /// Milliseconds waited.
        millis: u64,
    },
    /// The device returned a used-ring entry for no request the driver had outstanding.
    UnexpectedUsedId {
        /// The id it returned.
        id: u32,
    },
    /// The device claimed to have written a length that does not fit the request.
    BadUsedLength {
        /// What it claimed.
        len: u32,
        /// What the request allows.
        expected: u32,
    },
    /// The device failed earlier and is no longer used.
    DeviceFailed,
    /// The driver was asked for something it does not do (caller error).
    InvalidRequest(&'static str),
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(error) => write!(f, "PCI set-up: {error}"),
            Self::LegacyOnly { offered } => {
                write!(
                    f,
                    "device does not offer VIRTIO_F_VERSION_1 (features {offered:#x})"
                )
            }
            Self::FeaturesRefused { accepted } => {
                write!(
                    f,
                    "device refused features {accepted:#x} (FEATURES_OK cleared)"
                )
            }
            Self::DeviceStatus(status) => write!(f, "device status {status:#x} reports a failure"),
            Self::ResetTimeout => f.write_str("device did not complete its reset"),
            Self::ConfigUnstable => f.write_str("configuration generation never settled"),
            Self::BadConfig { field, value } => {
                write!(
                    f,
                    "configuration field {field} has unacceptable value {value:#x}"
                )
            }
            Self::QueueTooSmall { queue, max } => {
                write!(f, "queue {queue} offers at most {max} entries")
            }
            Self::Queue(error) => write!(f, "virtqueue: {error}"),
            Self::PoolExhausted { pages } => {
                write!(f, "shared pool has no room for {pages} bounce pages")
            }
            Self::Timeout { what, millis } => {
                write!(f, "device did not complete {what} within {millis} ms")
            }
            Self::UnexpectedUsedId { id } => {
                write!(
                    f,
                    "device returned used id {id}, which matches no outstanding request"
                )
            }
            Self::BadUsedLength { len, expected } => {
                write!(
                    f,
                    "device reported {len} bytes written where {expected} fit the request"
                )
            }
            Self::DeviceFailed => f.write_str("device failed earlier and is disabled"),
            Self::InvalidRequest(why) => write!(f, "invalid request: {why}"),
        }
    }
}

impl From<PciSetupError> for VirtioError {
    fn from(error: PciSetupError) -> Self {
        Self::Pci(error)
    }
}

impl From<virtio_drivers::Error> for VirtioError {
    fn from(error: virtio_drivers::Error) -> Self {
        Self::Queue(error)
    }
}
