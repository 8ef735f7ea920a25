//! The host client of the attested session protocol (docs/protocol.md): connects to an enclave
//! over AF_VSOCK (`vsock://CID:PORT`) or through a hybrid-vsock Unix socket
//! (`unix://PATH:PORT`, vhost-device-vsock), and drives `ward_attestation`'s sans-I/O
//! `ClientSession` over that stream. Used by `ward chat`, `ward release-key` and the end-to-end
//! tests.

mod address;
mod connection;
mod transport;

pub use address::{Address, AddressError};
pub use connection::{Answer, ClientError, Connection, os_rng};
pub use transport::{Stream, connect};

/// The vsock port Ward's service listens on (`ward_kernel::service::SERVICE_PORT`; the end-to-end
/// tests check they agree).
pub const SERVICE_PORT: u32 = 5000;
