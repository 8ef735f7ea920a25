//! Virtio devices (DESIGN §6): the modern virtio-pci transport, read-only virtio-blk and
//! virtio-vsock stream sockets, all polled, all DMA bounced through the shared pool.
//!
//! # What comes from `virtio-drivers` and what Ward adds
//!
//! From `virtio-drivers` 0.13 Ward uses the split virtqueue (`VirtQueue`: ring layout, a private
//! shadow of the descriptor table so descriptors are never read back from shared memory, the
//! check that a popped used entry's id equals the request's token, free-list bookkeeping) and its
//! `Hal` / `Transport` traits. Reading its device front ends showed places where it trusts the
//! device in ways Ward's trust model (DESIGN "Trust model") does not allow, so Ward's own code
//! replaces them:
//!
//! | where (virtio-drivers 0.13) | what it trusts | Ward |
//! | --- | --- | --- |
//! | `transport::pci::get_bar_region` | `offset + length` added in `u32`, can wrap | [`pci::caps::Region::within`] in `u64`, BARs placed by Ward inside its MMIO window |
//! | `PciTransport::notify` | `queue_notify_off × multiplier` indexes the notify region with `unwrap` | computed once per queue, bounds-checked; out of range = transport fault |
//! | `Transport::read_consistent` | loops while the generation changes | 8 attempts, then an error |
//! | `Transport::begin_init` | FEATURES_OK not read back; ACCESS_PLATFORM never accepted | [`negotiate`]: VERSION_1 required, ACCESS_PLATFORM accepted, FEATURES_OK and NEEDS_RESET checked |
//! | `VirtQueue::add_notify_wait_pop` (used by `VirtIOBlk` and every vsock send) | waits forever | TSC deadlines ([`deadline`]); a timeout disables the device |
//! | `VirtIOBlk` | capacity as given; used length ignored | capacity bounded, requests range-checked, used length must be data + 1 ([`blk`]) |
//! | `OwningQueue::pop` (vsock receive) | used id indexes its buffer array; used length slices the buffer | id must name a posted buffer, length must fit it ([`vsock::device`]) |
//! | `ConnectionInfo` credit arithmetic | plain `u32` `+`/`-` on peer values | wrapping counters, conservative peer credit, overruns reset the connection ([`vsock::connection`]) |
//! | `VsockConnectionManager` | unbounded connection list | at most [`vsock::MAX_CONNECTIONS`] |
//!
//! What `virtio-drivers` does check and Ward relies on: `VirtQueue::new` refuses a queue the
//! device offers smaller than asked; `pop_used` refuses a used id that is not the expected token
//! (and re-reads it, so a device changing it between peek and pop is caught); descriptors are
//! recycled from the private shadow, so the device cannot redirect a chain.

pub mod blk;
pub mod deadline;
pub mod error;
#[cfg(test)]
mod fake;
pub mod hal;
pub mod negotiate;
pub mod pci;
#[cfg(target_os = "none")]
pub mod selfcheck;
pub mod vsock;

pub use blk::{BlockDevice, BlockError};
pub use error::VirtioError;
pub use vsock::{ConnectionId, Vsock, VsockError};

#[cfg(target_os = "none")]
pub use kernel_devices::{Devices, KernelPool, probe};

#[cfg(target_os = "none")]
mod kernel_devices {
    use super::blk::BlockDevice;
    use super::hal::{BounceTable, PoolSource};
    use super::pci::bars::BarAllocator;
    use super::pci::transport::PciTransport;
    use super::vsock::Vsock;
    use crate::drivers::pci::ecam::Ecam;
    use crate::drivers::pci::{PciFunction, names};
    use crate::mm::shared_pool::SharedPool;
    use crate::report::Size;
    use log::{info, warn};
    use spin::Mutex;
    use virtio_drivers::transport::DeviceType;

    /// The kernel's shared pool (set up at boot) as the bounce-buffer source.
    pub struct KernelPool;

    static BOUNCES: Mutex<BounceTable> = Mutex::new(BounceTable::new());

    impl PoolSource for KernelPool {
        fn pool() -> Option<&'static SharedPool> {
            crate::boot::SHARED_POOL.get()
        }

        fn table() -> &'static Mutex<BounceTable> {
            &BOUNCES
        }
    }

    /// The devices Ward drives: the first modern virtio-blk and virtio-vsock found.
    pub struct Devices {
        /// The model disk.
        pub block: Option<BlockDevice<KernelPool, PciTransport>>,
        /// The vsock device.
        pub vsock: Option<Vsock<KernelPool, PciTransport>>,
    }

    /// Sets up the virtio devices among `functions` (from PCI enumeration). A device that fails
    /// set-up is reported and left out; the others still come up.
    pub fn probe(functions: &[PciFunction]) -> Devices {
        let ecam = Ecam::q35();
        let mut allocator = BarAllocator::new();
        let mut devices = Devices {
            block: None,
            vsock: None,
        };
        for function in functions {
            let kind = match names::virtio_device_type(function) {
                Some(2) => DeviceType::Block,
                Some(19) => DeviceType::Socket,
                _ => continue,
            };
            if !names::is_modern_virtio(function) {
                warn!(
                    "virtio: {} is a transitional device; only modern devices (disable-legacy=on) are driven",
                    function.bdf
                );
                continue;
            }
            let transport = match PciTransport::new(&ecam, function.bdf, kind, &mut allocator) {
                Ok(transport) => transport,
                Err(error) => {
                    warn!("virtio: {}: {error}", function.bdf);
                    continue;
                }
            };
            match kind {
                DeviceType::Block if devices.block.is_none() => match BlockDevice::new(transport) {
                    Ok(disk) => {
                        info!(
                            "virtio-blk {}: {} ({} sectors){}",
                            function.bdf,
                            Size(disk.capacity_bytes()),
                            disk.capacity_sectors(),
                            if disk.is_read_only() {
                                ", read-only"
                            } else {
                                ""
                            }
                        );
                        devices.block = Some(disk);
                    }
                    Err(error) => warn!("virtio-blk {}: {error}", function.bdf),
                },
                DeviceType::Socket if devices.vsock.is_none() => match Vsock::new(transport) {
                    Ok(vsock) => {
                        info!(
                            "virtio-vsock {}: guest CID {}",
                            function.bdf,
                            vsock.guest_cid()
                        );
                        devices.vsock = Some(vsock);
                    }
                    Err(error) => warn!("virtio-vsock {}: {error}", function.bdf),
                },
                _ => info!(
                    "virtio: {} is a second device of its kind, unused",
                    function.bdf
                ),
            }
        }
        devices
    }
}
