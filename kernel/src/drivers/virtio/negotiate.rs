//! Device initialisation (virtio 1.2 §3.1.1) with the checks `virtio-drivers`' `begin_init`
//! leaves out: the reset is waited for (bounded), VIRTIO_F_VERSION_1 is required,
//! VIRTIO_F_ACCESS_PLATFORM is accepted whenever offered (a confidential guest wants the device
//! to go through the platform's DMA translation; Ward's DMA is all in the shared pool either way),
//! FEATURES_OK is read back, and a device reporting NEEDS_RESET or FAILED is refused. On any
//! error the driver sets FAILED, as the specification asks.

use super::deadline::Deadline;
use super::error::VirtioError;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// VIRTIO_F_VERSION_1: a modern (non-legacy) device.
pub const F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_ACCESS_PLATFORM: the device's DMA goes through the platform's translation.
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;
/// How long a reset may take.
const RESET_TIMEOUT_MS: u64 = 1000;

/// The features to accept: what the driver wants and the device offers, plus the transport
/// features above. Refuses legacy-only devices.
pub fn choose_features(offered: u64, wanted: u64) -> Result<u64, VirtioError> {
    if offered & F_VERSION_1 == 0 {
        return Err(VirtioError::LegacyOnly { offered });
    }
    Ok(offered & (wanted | F_VERSION_1 | F_ACCESS_PLATFORM))
}

fn check_status(status: DeviceStatus) -> Result<(), VirtioError> {
    if status.intersects(DeviceStatus::DEVICE_NEEDS_RESET | DeviceStatus::FAILED) {
        return Err(VirtioError::DeviceStatus(status.bits() as u8));
    }
    Ok(())
}

/// Resets the device and negotiates features; returns the accepted set. The caller then sets
/// up its queues and calls [`finish`].
pub fn begin(transport: &mut impl Transport, wanted: u64) -> Result<u64, VirtioError> {
    transport.set_status(DeviceStatus::empty());
    let deadline = Deadline::after_millis(RESET_TIMEOUT_MS);
    while transport.get_status() != DeviceStatus::empty() {
        if deadline.expired() {
            return Err(VirtioError::ResetTimeout);
        }
        core::hint::spin_loop();
    }
    transport.set_status(DeviceStatus::ACKNOWLEDGE);
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let result = negotiate(transport, wanted);
    if result.is_err() {
        fail(transport);
    }
    result
}

fn negotiate(transport: &mut impl Transport, wanted: u64) -> Result<u64, VirtioError> {
    let offered = transport.read_device_features();
    let accepted = choose_features(offered, wanted)?;
    transport.write_driver_features(accepted);
    let features_ok = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
    transport.set_status(features_ok);
    let status = transport.get_status();
    check_status(status)?;
    if !status.contains(DeviceStatus::FEATURES_OK) {
        return Err(VirtioError::FeaturesRefused { accepted });
    }
    Ok(accepted)
}

/// Sets DRIVER_OK and checks the device took it.
pub fn finish(transport: &mut impl Transport) -> Result<(), VirtioError> {
    transport.set_status(
        DeviceStatus::ACKNOWLEDGE
            | DeviceStatus::DRIVER
            | DeviceStatus::FEATURES_OK
            | DeviceStatus::DRIVER_OK,
    );
    let result = check_status(transport.get_status());
    if result.is_err() {
        fail(transport);
    }
    result
}

/// Tells the device the driver gave up on it.
pub fn fail(transport: &mut impl Transport) {
    let status = transport.get_status();
    transport.set_status(status | DeviceStatus::FAILED);
}

/// Gives up on the device and resets it, so that it forgets its queues before their rings go
/// back to the pool (waits a bounded time for the reset to complete).
pub fn abandon(transport: &mut impl Transport) {
    fail(transport);
    transport.set_status(DeviceStatus::empty());
    let deadline = Deadline::after_millis(RESET_TIMEOUT_MS);
    while transport.get_status() != DeviceStatus::empty() && !deadline.expired() {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_choice() {
        const RO: u64 = 1 << 5;
        const FLUSH: u64 = 1 << 9;
        let offered = F_VERSION_1 | F_ACCESS_PLATFORM | RO | FLUSH | (1 << 28);
        assert_eq!(
            choose_features(offered, RO),
            Ok(F_VERSION_1 | F_ACCESS_PLATFORM | RO)
        );
        // Without ACCESS_PLATFORM offered, it is not accepted (and not required).
        assert_eq!(choose_features(F_VERSION_1 | RO, RO), Ok(F_VERSION_1 | RO));
        assert_eq!(
            choose_features(RO | FLUSH, RO),
            Err(VirtioError::LegacyOnly {
                offered: RO | FLUSH
            })
        );
        assert!(check_status(DeviceStatus::DEVICE_NEEDS_RESET).is_err());
        assert!(check_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::FEATURES_OK).is_ok());
    }
}
