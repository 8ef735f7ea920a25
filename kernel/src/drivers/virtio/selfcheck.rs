//! The device self-check a test deployment asks for (`test_devices = true` in the deployment
//! configuration): proves both drivers end to end for the boot test `tests/tests/devices.rs`.
//!
//! - Disk: reads the first [`DISK_CHECK_BYTES`] (or the whole disk if smaller) in one call — more
//!   than one request, so chunking is exercised — and prints its SHA-256; then checks that a
//!   read past the end is refused.
//! - Vsock: listens on [`ECHO_PORT`], accepts one connection and echoes what it receives until
//!   the peer closes.

use super::Devices;
use super::blk::SECTOR_SIZE;
use super::vsock::VsockError;
use crate::arch::tsc;
use crate::report::{Hex, Size};
use alloc::vec;
use log::info;
use sha2::{Digest, Sha256};

/// Bytes of the disk hashed.
pub const DISK_CHECK_BYTES: u64 = 3 << 20;
/// The echo port.
pub const ECHO_PORT: u32 = 5000;
/// How long to wait for the host to connect.
const ACCEPT_TIMEOUT_MS: u64 = 120_000;
/// How long a connection may stay idle.
const IDLE_TIMEOUT_MS: u64 = 60_000;

/// Runs the checks; `Err` says which failed.
pub fn run(devices: &mut Devices) -> Result<(), &'static str> {
    check_disk(devices)?;
    check_vsock(devices)
}

fn check_disk(devices: &mut Devices) -> Result<(), &'static str> {
    let disk = devices.block.as_mut().ok_or("no virtio-blk device")?;
    let bytes = disk
        .capacity_bytes()
        .min(DISK_CHECK_BYTES)
        .next_multiple_of(SECTOR_SIZE as u64)
        .min(disk.capacity_bytes());
    if bytes == 0 {
        return Err("the disk is empty");
    }
    let mut data = vec![0u8; bytes as usize];
    let start = tsc::micros_since_start();
    if let Err(error) = disk.read(0, &mut data) {
        log::error!("self-check: disk read failed: {error}");
        return Err("disk read failed");
    }
    let micros = (tsc::micros_since_start() - start).max(1);
    info!(
        "self-check: disk read {} in {} us ({} KiB/s)",
        Size(bytes),
        micros,
        bytes * 1_000_000 / 1024 / micros
    );
    info!(
        "self-check: disk sha256 of first {} bytes = {}",
        bytes,
        Hex(&Sha256::digest(&data))
    );
    let mut sector = [0u8; SECTOR_SIZE];
    match disk.read(disk.capacity_sectors(), &mut sector) {
        Err(error) => info!("self-check: read past the end refused: {error}"),
        Ok(()) => return Err("a read past the end of the disk succeeded"),
    }
    Ok(())
}

fn check_vsock(devices: &mut Devices) -> Result<(), &'static str> {
    let vsock = devices.vsock.as_mut().ok_or("no virtio-vsock device")?;
    vsock.listen(ECHO_PORT).map_err(|_| "listen failed")?;
    info!("self-check: vsock listening on port {ECHO_PORT}");
    let deadline = super::deadline::Deadline::after_millis(ACCEPT_TIMEOUT_MS);
    let id = loop {
        vsock.poll().map_err(|_| "vsock poll failed")?;
        if let Some(id) = vsock.accept() {
            break id;
        }
        if deadline.expired() {
            return Err("no vsock connection arrived");
        }
        core::hint::spin_loop();
    };
    info!(
        "self-check: vsock accepted CID {} port {} on port {}",
        id.peer_cid, id.peer_port, id.local_port
    );
    let mut buffer = vec![0u8; 16 * 1024];
    let mut echoed = 0usize;
    let mut idle = super::deadline::Deadline::after_millis(IDLE_TIMEOUT_MS);
    loop {
        vsock.poll().map_err(|_| "vsock poll failed")?;
        let count = match vsock.recv(id, &mut buffer) {
            Ok(count) => count,
            Err(VsockError::Closed(reason)) => {
                info!("self-check: vsock echoed {echoed} bytes; peer closed ({reason:?})");
                return Ok(());
            }
            Err(error) => {
                log::error!("self-check: vsock receive failed: {error}");
                return Err("vsock receive failed");
            }
        };
        if count == 0 {
            if idle.expired() {
                return Err("vsock connection idle too long");
            }
            core::hint::spin_loop();
            continue;
        }
        idle = super::deadline::Deadline::after_millis(IDLE_TIMEOUT_MS);
        let mut sent = 0;
        while sent < count {
            match vsock.send(id, &buffer[sent..count]) {
                Ok(0) => vsock.poll().map_err(|_| "vsock poll failed")?,
                Ok(n) => sent += n,
                Err(error) => {
                    log::error!("self-check: vsock send failed: {error}");
                    return Err("vsock send failed");
                }
            }
            if idle.expired() {
                return Err("vsock peer gave no credit");
            }
        }
        echoed += count;
    }
}
