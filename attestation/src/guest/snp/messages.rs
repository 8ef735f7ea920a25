//! Payloads of the guest messages Ward sends (ABI 56860 ch. 7): MSG_REPORT_REQ/RSP for the
//! attestation report and MSG_KEY_REQ/RSP for keys derived from the chip's root keys and this
//! guest's launch identity.

use crate::evidence::snp::REPORT_SIZE;
use core::fmt;

/// MSG_REPORT_REQ payload length (message version 1).
pub const REPORT_REQUEST_LEN: usize = 0x60;
/// MSG_KEY_REQ payload length (message version 1).
pub const KEY_REQUEST_LEN: usize = 0x20;
const REPORT_OFFSET: usize = 0x20;
const KEY_OFFSET: usize = 0x20;

/// MSG_REPORT_REQ: a report signed with the VCEK over `report_data` at `vmpl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    pub report_data: [u8; 64],
    pub vmpl: u32,
}

impl ReportRequest {
    pub fn encode(&self) -> [u8; REPORT_REQUEST_LEN] {
        let mut b = [0u8; REPORT_REQUEST_LEN];
        b[..64].copy_from_slice(&self.report_data);
        b[0x40..0x44].copy_from_slice(&self.vmpl.to_le_bytes());
        // KEY_SEL (0x44) = 0: the firmware picks the VLEK if one is installed, else the VCEK.
        b
    }
}

/// Which root key a derived key descends from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKey {
    /// The chip-unique VCEK.
    Vcek = 0,
    /// The VM root key of a migration agent (not used by Ward).
    Vmrk = 1,
}

/// Guest fields mixed into a derived key (GUEST_FIELD_SELECT bits).
pub mod field {
    pub const POLICY: u64 = 1 << 0;
    pub const IMAGE_ID: u64 = 1 << 1;
    pub const FAMILY_ID: u64 = 1 << 2;
    pub const MEASUREMENT: u64 = 1 << 3;
    pub const GUEST_SVN: u64 = 1 << 4;
    pub const TCB_VERSION: u64 = 1 << 5;
}

/// MSG_KEY_REQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    pub root_key: RootKey,
    pub guest_field_select: u64,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub tcb_version: u64,
}

impl KeyRequest {
    pub fn encode(&self) -> [u8; KEY_REQUEST_LEN] {
        let mut b = [0u8; KEY_REQUEST_LEN];
        b[0..4].copy_from_slice(&(self.root_key as u32).to_le_bytes());
        b[0x08..0x10].copy_from_slice(&self.guest_field_select.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.tcb_version.to_le_bytes());
        b
    }
}

/// A response payload the guest cannot use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The payload is shorter than its fields.
    Short(usize),
    /// The firmware refused the request (STATUS: 0x16 invalid parameters, 0x27 invalid key
    /// selection).
    Status(u32),
    /// REPORT_SIZE is not the size of a report.
    ReportSize(u32),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short(n) => write!(f, "guest message response payload of {n} bytes"),
            Self::Status(s) => write!(f, "firmware refused the guest request (status {s:#x})"),
            Self::ReportSize(s) => write!(f, "report size {s}, expected {REPORT_SIZE}"),
        }
    }
}

fn status(payload: &[u8], min_len: usize) -> Result<(), ResponseError> {
    if payload.len() < min_len {
        return Err(ResponseError::Short(payload.len()));
    }
    match u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) {
        0 => Ok(()),
        s => Err(ResponseError::Status(s)),
    }
}

/// The report inside a MSG_REPORT_RSP payload.
pub fn report_from_response(payload: &[u8]) -> Result<&[u8], ResponseError> {
    status(payload, 8)?;
    let size = u32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]);
    if size as usize != REPORT_SIZE {
        return Err(ResponseError::ReportSize(size));
    }
    payload
        .get(REPORT_OFFSET..REPORT_OFFSET + REPORT_SIZE)
        .ok_or(ResponseError::Short(payload.len()))
}

/// The derived key inside a MSG_KEY_RSP payload.
pub fn key_from_response(payload: &[u8]) -> Result<[u8; 32], ResponseError> {
    status(payload, KEY_OFFSET + 32)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&payload[KEY_OFFSET..KEY_OFFSET + 32]);
    Ok(key)
}
