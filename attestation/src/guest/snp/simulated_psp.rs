//! A simulated PSP for the host tests: the firmware side of SNP_GUEST_REQUEST, written from the
//! ABI's description (its own sequence counter, header checks, AES-256-GCM with the same VMPCK),
//! so the guest channel is exercised against an independent peer, including a lying hypervisor
//! that replays, reorders and tampers with the pages in between.

use super::guest_message::{
    self, GuestChannel, GuestMessageError, HEADER_LEN, MESSAGE_PAGE_SIZE, MessageType,
};
use super::messages::{self, KeyRequest, ReportRequest, ResponseError, RootKey};
use crate::evidence::snp::{REPORT_SIZE, SnpReport};
use sha2::{Digest, Sha256};

pub(crate) const VMPCK: [u8; 32] = [0x42; 32];
const MEASUREMENT: [u8; 48] = [0x6D; 48];
const HOST_DATA: [u8; 32] = [0x4D; 32];

/// Firmware errors the simulated PSP reports instead of a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PspRefusal {
    Unauthentic,
    BadSequence,
}

pub(crate) struct SimulatedPsp {
    key: [u8; 32],
    last_seqno: u64,
    chip_secret: [u8; 32],
    /// A status to put into the next response payload (a firmware-level refusal).
    next_status: u32,
}

impl SimulatedPsp {
    pub(crate) fn new() -> Self {
        Self {
            key: VMPCK,
            last_seqno: 0,
            chip_secret: [7; 32],
            next_status: 0,
        }
    }

    pub(crate) fn handle(
        &mut self,
        request: &[u8; MESSAGE_PAGE_SIZE],
    ) -> Result<[u8; MESSAGE_PAGE_SIZE], PspRefusal> {
        let mut page = *request;
        let header = guest_message::read_header(&page).map_err(|_| PspRefusal::Unauthentic)?;
        if header.seqno != self.last_seqno + 1 {
            return Err(PspRefusal::BadSequence);
        }
        guest_message::open_in_place(&self.key, &mut page, header.seqno, header.size)
            .map_err(|_| PspRefusal::Unauthentic)?;
        let payload = &page[HEADER_LEN..HEADER_LEN + header.size];
        let mut body = [0u8; MESSAGE_PAGE_SIZE - HEADER_LEN];
        let (response_type, size) = if header.msg_type == MessageType::ReportRequest as u8 {
            body[4..8].copy_from_slice(&(REPORT_SIZE as u32).to_le_bytes());
            let report = &mut body[0x20..0x20 + REPORT_SIZE];
            report[0] = 2; // version
            report[0x08] = 0x30; // policy: SMT allowed | reserved-one bit
            report[0x11] = 0;
            report[0x30..0x34].copy_from_slice(&payload[0x40..0x44]); // VMPL
            report[0x34] = 1; // ECDSA P-384 with SHA-384
            report[0x50..0x90].copy_from_slice(&payload[..64]);
            report[0x90..0xC0].copy_from_slice(&MEASUREMENT);
            report[0xC0..0xE0].copy_from_slice(&HOST_DATA);
            (MessageType::ReportResponse, 0x20 + REPORT_SIZE)
        } else if header.msg_type == MessageType::KeyRequest as u8 {
            let derived = Sha256::new()
                .chain_update(self.chip_secret)
                .chain_update(payload)
                .chain_update(MEASUREMENT)
                .finalize();
            body[0x20..0x40].copy_from_slice(&derived);
            (MessageType::KeyResponse, 0x40)
        } else {
            return Err(PspRefusal::Unauthentic);
        };
        body[..4].copy_from_slice(&self.next_status.to_le_bytes());
        let seqno = header.seqno + 1;
        let mut response = [0u8; MESSAGE_PAGE_SIZE];
        guest_message::write_header(
            &mut response,
            seqno,
            response_type as u8,
            1,
            size as u16,
            header.vmpck,
        );
        response[HEADER_LEN..HEADER_LEN + size].copy_from_slice(&body[..size]);
        guest_message::seal_in_place(&self.key, &mut response, seqno, size);
        self.last_seqno = seqno;
        Ok(response)
    }
}

fn report_request(data: u8) -> [u8; messages::REPORT_REQUEST_LEN] {
    ReportRequest {
        report_data: [data; 64],
        vmpl: 0,
    }
    .encode()
}

fn exchange(
    channel: &mut GuestChannel,
    psp: &mut SimulatedPsp,
    msg_type: MessageType,
    payload: &[u8],
) -> Result<[u8; MESSAGE_PAGE_SIZE], GuestMessageError> {
    let mut page = [0u8; MESSAGE_PAGE_SIZE];
    channel.seal_request(msg_type, 1, payload, &mut page)?;
    let response = psp.handle(&page).map_err(|_| {
        channel.fail();
        GuestMessageError::Transport
    })?;
    Ok(response)
}

#[test]
fn report_round_trip_and_sequence_numbers_advance_by_two() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    for (i, data) in [0x11u8, 0x22, 0x33].into_iter().enumerate() {
        let mut request = [0u8; MESSAGE_PAGE_SIZE];
        let seqno = channel
            .seal_request(
                MessageType::ReportRequest,
                1,
                &report_request(data),
                &mut request,
            )
            .unwrap();
        assert_eq!(
            seqno,
            2 * i as u64 + 1,
            "requests use odd sequence numbers 1, 3, 5"
        );
        // The plaintext is not on the page.
        assert!(
            !request[HEADER_LEN..HEADER_LEN + 64]
                .iter()
                .all(|&b| b == data)
        );
        let mut response = psp.handle(&request).unwrap();
        let payload = channel.open_response(&mut response).unwrap();
        let report = SnpReport::parse(messages::report_from_response(payload).unwrap()).unwrap();
        assert_eq!(report.report_data, [data; 64]);
        assert_eq!(report.host_data, HOST_DATA);
        assert_eq!(channel.last_seqno(), 2 * i as u64 + 2);
    }
}

#[test]
fn derived_key_round_trip() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    let request = KeyRequest {
        root_key: RootKey::Vcek,
        guest_field_select: messages::field::MEASUREMENT | messages::field::POLICY,
        vmpl: 0,
        guest_svn: 0,
        tcb_version: 0,
    };
    let mut response = exchange(
        &mut channel,
        &mut psp,
        MessageType::KeyRequest,
        &request.encode(),
    )
    .unwrap();
    let key = messages::key_from_response(channel.open_response(&mut response).unwrap()).unwrap();
    // Same request again gives the same key (a fresh exchange with new sequence numbers).
    let mut again = exchange(
        &mut channel,
        &mut psp,
        MessageType::KeyRequest,
        &request.encode(),
    )
    .unwrap();
    assert_eq!(
        messages::key_from_response(channel.open_response(&mut again).unwrap()).unwrap(),
        key
    );
    let other = KeyRequest {
        guest_field_select: messages::field::MEASUREMENT,
        ..request
    };
    let mut third = exchange(
        &mut channel,
        &mut psp,
        MessageType::KeyRequest,
        &other.encode(),
    )
    .unwrap();
    assert_ne!(
        messages::key_from_response(channel.open_response(&mut third).unwrap()).unwrap(),
        key
    );
}

/// Runs one exchange, lets `tamper` change the response, and returns the guest's verdict and
/// whether the key survived.
fn tampered(tamper: impl FnOnce(&mut [u8; MESSAGE_PAGE_SIZE])) -> (GuestMessageError, bool) {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    let mut response = exchange(
        &mut channel,
        &mut psp,
        MessageType::ReportRequest,
        &report_request(1),
    )
    .unwrap();
    tamper(&mut response);
    let error = channel.open_response(&mut response).unwrap_err();
    (error, channel.is_wiped())
}

/// A named change to a response page and the refusal it must cause.
type Tamper = (
    &'static str,
    fn(&mut [u8; MESSAGE_PAGE_SIZE]),
    GuestMessageError,
);

#[test]
fn every_tampered_response_is_refused_and_wipes_the_key() {
    let cases: [Tamper; 10] = [
        (
            "ciphertext bit",
            |p| p[HEADER_LEN + 40] ^= 1,
            GuestMessageError::Unauthentic,
        ),
        ("tag bit", |p| p[3] ^= 0x80, GuestMessageError::Unauthentic),
        (
            "unused tag bytes",
            |p| p[20] = 1,
            GuestMessageError::BadHeader("unused tag bytes"),
        ),
        (
            "message version (in AAD)",
            |p| p[0x35] = 2,
            GuestMessageError::Unauthentic,
        ),
        (
            "algorithm",
            |p| p[0x30] = 2,
            GuestMessageError::BadHeader("algorithm"),
        ),
        (
            "header version",
            |p| p[0x31] = 2,
            GuestMessageError::BadHeader("header version"),
        ),
        (
            "header size",
            |p| p[0x32] = 0x50,
            GuestMessageError::BadHeader("header size"),
        ),
        (
            "message size",
            |p| p[0x37] = 0x10,
            GuestMessageError::BadHeader("message size"),
        ),
        (
            "VMPCK index",
            |p| p[0x3C] = 1,
            GuestMessageError::BadHeader("VMPCK index"),
        ),
        (
            "sequence number",
            |p| p[0x20] = 4,
            GuestMessageError::WrongSequence {
                expected: 2,
                got: 4,
            },
        ),
    ];
    for (what, tamper, expected) in cases {
        let (error, wiped) = tampered(tamper);
        assert_eq!(error, expected, "{what}");
        assert!(wiped, "{what}: key must be wiped");
    }
    let (error, wiped) = tampered(|p| p[0x34] = MessageType::KeyResponse as u8);
    assert_eq!(
        error,
        GuestMessageError::WrongType {
            expected: 6,
            got: 4
        }
    );
    assert!(wiped);
}

#[test]
fn replayed_response_is_refused() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    let mut first = exchange(
        &mut channel,
        &mut psp,
        MessageType::ReportRequest,
        &report_request(1),
    )
    .unwrap();
    let saved = first;
    channel.open_response(&mut first).unwrap();
    // The hypervisor swallows the next response and hands back the old one.
    let _ = exchange(
        &mut channel,
        &mut psp,
        MessageType::ReportRequest,
        &report_request(2),
    )
    .unwrap();
    let mut replay = saved;
    assert_eq!(
        channel.open_response(&mut replay).unwrap_err(),
        GuestMessageError::WrongSequence {
            expected: 4,
            got: 2
        }
    );
    assert!(channel.is_wiped());
    let mut page = [0u8; MESSAGE_PAGE_SIZE];
    assert_eq!(
        channel.seal_request(MessageType::ReportRequest, 1, &report_request(3), &mut page),
        Err(GuestMessageError::KeyWiped)
    );
}

#[test]
fn response_under_another_key_is_refused() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    psp.key = [0x43; 32];
    let mut request = [0u8; MESSAGE_PAGE_SIZE];
    channel
        .seal_request(
            MessageType::ReportRequest,
            1,
            &report_request(1),
            &mut request,
        )
        .unwrap();
    // The PSP cannot authenticate a request under another key...
    assert_eq!(psp.handle(&request).unwrap_err(), PspRefusal::Unauthentic);
    // ...and a response forged under another key does not authenticate at the guest.
    let mut forged = [0u8; MESSAGE_PAGE_SIZE];
    guest_message::write_header(
        &mut forged,
        2,
        MessageType::ReportResponse as u8,
        1,
        0x20,
        0,
    );
    guest_message::seal_in_place(&[0x43; 32], &mut forged, 2, 0x20);
    assert_eq!(
        channel.open_response(&mut forged).unwrap_err(),
        GuestMessageError::Unauthentic
    );
}

#[test]
fn protocol_misuse_is_refused() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut page = [0u8; MESSAGE_PAGE_SIZE];
    assert_eq!(
        channel.open_response(&mut page).unwrap_err(),
        GuestMessageError::NoRequestPending
    );
    assert!(
        channel.is_wiped(),
        "an unsolicited response is a failure too"
    );

    let mut channel = GuestChannel::new(VMPCK, 0);
    assert_eq!(
        channel.seal_request(MessageType::ReportResponse, 1, &[], &mut page),
        Err(GuestMessageError::NotARequest(MessageType::ReportResponse))
    );
    assert_eq!(
        channel.seal_request(MessageType::ReportRequest, 1, &[0; 4096], &mut page),
        Err(GuestMessageError::PayloadTooLarge(4096))
    );
    channel
        .seal_request(MessageType::ReportRequest, 1, &report_request(1), &mut page)
        .unwrap();
    let resend = page;
    // A second request before the response would need an unknown sequence number.
    assert_eq!(
        channel.seal_request(MessageType::ReportRequest, 1, &report_request(2), &mut page),
        Err(GuestMessageError::ResponsePending)
    );
    // A retry resends exactly the same bytes: same IV with the same plaintext.
    let mut psp = SimulatedPsp::new();
    let mut response = psp.handle(&resend).unwrap();
    channel.open_response(&mut response).unwrap();
    // The PSP refuses a replayed request.
    assert_eq!(psp.handle(&resend).unwrap_err(), PspRefusal::BadSequence);
}

#[test]
fn sequence_exhaustion_wipes_the_key() {
    let mut page = [0u8; MESSAGE_PAGE_SIZE];
    let mut channel = GuestChannel::at_sequence(VMPCK, u64::MAX - 1);
    assert_eq!(
        channel.seal_request(MessageType::ReportRequest, 1, &report_request(1), &mut page),
        Err(GuestMessageError::SequenceExhausted)
    );
    assert!(channel.is_wiped());
    let mut channel = GuestChannel::at_sequence(VMPCK, u64::MAX - 2);
    assert_eq!(
        channel.seal_request(MessageType::ReportRequest, 1, &report_request(1), &mut page),
        Ok(u64::MAX - 1)
    );
}

#[test]
fn firmware_status_and_bad_payloads_are_typed_errors() {
    let mut channel = GuestChannel::new(VMPCK, 0);
    let mut psp = SimulatedPsp::new();
    psp.next_status = 0x16;
    let mut response = exchange(
        &mut channel,
        &mut psp,
        MessageType::ReportRequest,
        &report_request(1),
    )
    .unwrap();
    let payload = channel.open_response(&mut response).unwrap();
    assert_eq!(
        messages::report_from_response(payload),
        Err(ResponseError::Status(0x16))
    );
    assert_eq!(
        messages::report_from_response(&[0; 4]),
        Err(ResponseError::Short(4))
    );
    let mut wrong_size = [0u8; 0x20 + REPORT_SIZE];
    wrong_size[4] = 0x10;
    assert_eq!(
        messages::report_from_response(&wrong_size),
        Err(ResponseError::ReportSize(0x10))
    );
    assert_eq!(
        messages::key_from_response(&[0; 0x30]),
        Err(ResponseError::Short(0x30))
    );
}
