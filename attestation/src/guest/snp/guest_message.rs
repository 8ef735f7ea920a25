//! SNP_GUEST_REQUEST messages (Firmware ABI 56860 ch. 7, "Guest Messages"): the guest and the
//! PSP exchange AES-256-GCM protected messages keyed with a VMPCK from the secrets page, through
//! pages the hypervisor can see but cannot forge.
//!
//! A message is a 0x60-byte header followed by the encrypted payload:
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | AUTHTAG (32 bytes; AES-GCM uses the first 16, the rest is zero) |
//! | 0x20 | MSG_SEQNO (u64) |
//! | 0x28 | reserved (8) |
//! | 0x30 | ALGO (u8, 1 = AES-256-GCM), HDR_VERSION (u8, 1), HDR_SIZE (u16, 0x60) |
//! | 0x34 | MSG_TYPE (u8), MSG_VERSION (u8), MSG_SIZE (u16) |
//! | 0x38 | reserved (4), MSG_VMPCK (u8), reserved (35) |
//!
//! The AAD is bytes 0x30..0x60; the IV is MSG_SEQNO as a 96-bit little-endian number. Requests
//! use odd sequence numbers and the PSP answers with the next one, so each exchange advances the
//! counter by two and no IV is ever used twice under the key. Any failure — an unauthentic or
//! malformed response, a wrong sequence number, a transport error — leaves the PSP's counter
//! in an unknown state, so [`GuestChannel`] wipes its key and refuses every later request
//! (the Linux `sev-guest` driver does the same): reusing an IV under AES-GCM would reveal the
//! key stream and allow forgeries.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use core::fmt;
use zeroize::Zeroizing;

/// Size of a message page.
pub const MESSAGE_PAGE_SIZE: usize = 4096;
/// Size of the message header.
pub const HEADER_LEN: usize = 0x60;
/// Largest payload that fits a page.
pub const MAX_PAYLOAD: usize = MESSAGE_PAGE_SIZE - HEADER_LEN;

const ALGO_AES_256_GCM: u8 = 1;
const HEADER_VERSION: u8 = 1;
const AAD: core::ops::Range<usize> = 0x30..0x60;
const SEQNO: usize = 0x20;
const TAG_LEN: usize = 16;

/// Message types (ABI 56860 table "Message Type Encodings") Ward sends and expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    KeyRequest = 3,
    KeyResponse = 4,
    ReportRequest = 5,
    ReportResponse = 6,
}

impl MessageType {
    /// The response type that answers this request type.
    pub fn response(self) -> Option<Self> {
        match self {
            Self::KeyRequest => Some(Self::KeyResponse),
            Self::ReportRequest => Some(Self::ReportResponse),
            Self::KeyResponse | Self::ReportResponse => None,
        }
    }
}

/// Why a guest message could not be sent or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMessageError {
    /// The key was wiped after an earlier failure; no message can be sent any more.
    KeyWiped,
    /// A response is awaited; a new request would need a sequence number that is not known yet.
    ResponsePending,
    /// No request is outstanding, so no response is expected.
    NoRequestPending,
    /// The payload does not fit a page.
    PayloadTooLarge(usize),
    /// Not a request type.
    NotARequest(MessageType),
    /// The sequence number space is exhausted.
    SequenceExhausted,
    /// A header field of the response is wrong.
    BadHeader(&'static str),
    /// The response's sequence number is not the one after our request's.
    WrongSequence { expected: u64, got: u64 },
    /// The response type does not answer the request.
    WrongType { expected: u8, got: u8 },
    /// AES-GCM authentication of the response failed.
    Unauthentic,
    /// The caller reports that the exchange failed in transport (hypervisor error).
    Transport,
}

impl fmt::Display for GuestMessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyWiped => f.write_str("VMPCK wiped after an earlier failure"),
            Self::ResponsePending => f.write_str("a guest request is still awaiting its response"),
            Self::NoRequestPending => f.write_str("no guest request outstanding"),
            Self::PayloadTooLarge(n) => write!(f, "payload of {n} bytes exceeds {MAX_PAYLOAD}"),
            Self::NotARequest(t) => write!(f, "{t:?} is not a request"),
            Self::SequenceExhausted => f.write_str("message sequence numbers exhausted"),
            Self::BadHeader(what) => write!(f, "bad guest message header: {what}"),
            Self::WrongSequence { expected, got } => {
                write!(f, "response sequence number {got}, expected {expected}")
            }
            Self::WrongType { expected, got } => {
                write!(f, "response message type {got}, expected {expected}")
            }
            Self::Unauthentic => f.write_str("guest message response failed authentication"),
            Self::Transport => f.write_str("guest request failed in transport"),
        }
    }
}

fn nonce(seqno: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&seqno.to_le_bytes());
    n.into()
}

/// Writes a header (without tag) for a message.
pub(crate) fn write_header(
    page: &mut [u8],
    seqno: u64,
    msg_type: u8,
    msg_version: u8,
    size: u16,
    vmpck: u8,
) {
    page[..HEADER_LEN].fill(0);
    page[SEQNO..SEQNO + 8].copy_from_slice(&seqno.to_le_bytes());
    page[0x30] = ALGO_AES_256_GCM;
    page[0x31] = HEADER_VERSION;
    page[0x32..0x34].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    page[0x34] = msg_type;
    page[0x35] = msg_version;
    page[0x36..0x38].copy_from_slice(&size.to_le_bytes());
    page[0x3C] = vmpck;
}

/// Encrypts `page[HEADER_LEN..HEADER_LEN + size]` in place under the header already written
/// and stores the tag (used by the guest and by the tests' simulated PSP).
pub(crate) fn seal_in_place(
    key: &[u8; 32],
    page: &mut [u8; MESSAGE_PAGE_SIZE],
    seqno: u64,
    size: usize,
) {
    let cipher = Aes256Gcm::new(key.into());
    let (header, body) = page.split_at_mut(HEADER_LEN);
    // Encryption only fails for inputs beyond 2^36 bytes; a page never is.
    let tag = cipher
        .encrypt_inout_detached(&nonce(seqno), &header[AAD], (&mut body[..size]).into())
        .unwrap_or_default();
    header[..TAG_LEN].copy_from_slice(&tag);
}

/// Parsed, not yet authenticated header fields.
pub(crate) struct Header {
    pub seqno: u64,
    pub msg_type: u8,
    pub msg_version: u8,
    pub size: usize,
    pub vmpck: u8,
}

pub(crate) fn read_header(page: &[u8; MESSAGE_PAGE_SIZE]) -> Result<Header, GuestMessageError> {
    if page[0x30] != ALGO_AES_256_GCM {
        return Err(GuestMessageError::BadHeader("algorithm"));
    }
    if page[0x31] != HEADER_VERSION {
        return Err(GuestMessageError::BadHeader("header version"));
    }
    if u16::from_le_bytes([page[0x32], page[0x33]]) as usize != HEADER_LEN {
        return Err(GuestMessageError::BadHeader("header size"));
    }
    let size = u16::from_le_bytes([page[0x36], page[0x37]]) as usize;
    if size > MAX_PAYLOAD {
        return Err(GuestMessageError::BadHeader("message size"));
    }
    if page[TAG_LEN..0x20].iter().any(|&b| b != 0) {
        return Err(GuestMessageError::BadHeader("unused tag bytes"));
    }
    let mut seqno = [0u8; 8];
    seqno.copy_from_slice(&page[SEQNO..SEQNO + 8]);
    Ok(Header {
        seqno: u64::from_le_bytes(seqno),
        msg_type: page[0x34],
        msg_version: page[0x35],
        size,
        vmpck: page[0x3C],
    })
}

/// Decrypts the payload in place after checking the tag.
pub(crate) fn open_in_place(
    key: &[u8; 32],
    page: &mut [u8; MESSAGE_PAGE_SIZE],
    seqno: u64,
    size: usize,
) -> Result<(), GuestMessageError> {
    let cipher = Aes256Gcm::new(key.into());
    let (header, body) = page.split_at_mut(HEADER_LEN);
    let tag = Tag::try_from(&header[..TAG_LEN]).map_err(|_| GuestMessageError::Unauthentic)?;
    cipher
        .decrypt_inout_detached(
            &nonce(seqno),
            &header[AAD],
            (&mut body[..size]).into(),
            &tag,
        )
        .map_err(|_| GuestMessageError::Unauthentic)
}

/// The guest end of the channel to the PSP for one VMPCK.
pub struct GuestChannel {
    key: Option<Zeroizing<[u8; 32]>>,
    vmpck_index: u8,
    /// Sequence number of the last completed response (0 before the first exchange).
    last_seqno: u64,
    /// The outstanding request: its sequence number and type.
    pending: Option<(u64, MessageType)>,
}

impl GuestChannel {
    /// A channel using VMPCK`vmpck_index` (Ward runs at VMPL0 and uses VMPCK0). The PSP's
    /// counter for that key starts at zero at launch.
    pub fn new(vmpck: [u8; 32], vmpck_index: u8) -> Self {
        Self {
            key: Some(Zeroizing::new(vmpck)),
            vmpck_index,
            last_seqno: 0,
            pending: None,
        }
    }

    /// Whether the key has been wiped.
    pub fn is_wiped(&self) -> bool {
        self.key.is_none()
    }

    /// Wipes the key: from now on every request is refused. Called on every failure, including
    /// a transport failure the caller observed.
    pub fn fail(&mut self) {
        self.key = None;
        self.pending = None;
    }

    /// Builds the encrypted request page for `payload`. The page may be resent unchanged if the
    /// hypervisor asks for a retry (same IV, same plaintext: nothing new is revealed); a new
    /// request is refused until [`Self::open_response`] or [`Self::fail`] is called.
    pub fn seal_request(
        &mut self,
        msg_type: MessageType,
        msg_version: u8,
        payload: &[u8],
        page: &mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<u64, GuestMessageError> {
        let key = self.key.as_ref().ok_or(GuestMessageError::KeyWiped)?;
        if self.pending.is_some() {
            return Err(GuestMessageError::ResponsePending);
        }
        if msg_type.response().is_none() {
            return Err(GuestMessageError::NotARequest(msg_type));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(GuestMessageError::PayloadTooLarge(payload.len()));
        }
        // The request takes last+1 and its response last+2; both must exist.
        let seqno = match self.last_seqno.checked_add(2) {
            Some(_) => self.last_seqno + 1,
            None => {
                self.fail();
                return Err(GuestMessageError::SequenceExhausted);
            }
        };
        write_header(
            page,
            seqno,
            msg_type as u8,
            msg_version,
            payload.len() as u16,
            self.vmpck_index,
        );
        page[HEADER_LEN..].fill(0);
        page[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        seal_in_place(key, page, seqno, payload.len());
        self.pending = Some((seqno, msg_type));
        Ok(seqno)
    }

    /// Checks and decrypts the response (already copied out of the shared page into private
    /// memory); returns the plaintext payload, which stays in `page`. Any failure wipes the key.
    pub fn open_response<'p>(
        &mut self,
        page: &'p mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<&'p [u8], GuestMessageError> {
        let result = self.open_checked(page);
        match result {
            Ok(size) => Ok(&page[HEADER_LEN..HEADER_LEN + size]),
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    fn open_checked(
        &mut self,
        page: &mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<usize, GuestMessageError> {
        let key = self.key.as_ref().ok_or(GuestMessageError::KeyWiped)?;
        let (request_seqno, request_type) =
            self.pending.ok_or(GuestMessageError::NoRequestPending)?;
        let header = read_header(page)?;
        let expected_seqno = request_seqno + 1;
        if header.seqno != expected_seqno {
            return Err(GuestMessageError::WrongSequence {
                expected: expected_seqno,
                got: header.seqno,
            });
        }
        let expected_type = request_type.response().map_or(0, |t| t as u8);
        if header.msg_type != expected_type {
            return Err(GuestMessageError::WrongType {
                expected: expected_type,
                got: header.msg_type,
            });
        }
        if header.vmpck != self.vmpck_index {
            return Err(GuestMessageError::BadHeader("VMPCK index"));
        }
        if header.msg_version == 0 {
            return Err(GuestMessageError::BadHeader("message version"));
        }
        open_in_place(key, page, header.seqno, header.size)?;
        self.last_seqno = expected_seqno;
        self.pending = None;
        Ok(header.size)
    }

    /// Sequence number of the last completed exchange's response.
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }
}

#[cfg(test)]
impl GuestChannel {
    /// A channel whose counter is already at `last_seqno` (to test exhaustion).
    pub(crate) fn at_sequence(vmpck: [u8; 32], last_seqno: u64) -> Self {
        Self {
            last_seqno,
            ..Self::new(vmpck, 0)
        }
    }
}
