//! Both state machines, in memory: a full simulated session, every rejection, and the
//! fixed record size on the wire.

use super::frame::{FRAME_CLIENT_HELLO, FRAME_RECORD, RECORD_FRAME_LEN};
use super::*;
use crate::config::Config;
use crate::keyrelease::ReleaseKeyPair;
use crate::sealed::ModelKey;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const MEASUREMENT: [u8; 48] = [0x11; 48];
const SENDER_SECRET: [u8; 32] = [0x42; 32];

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn config_bytes() -> Vec<u8> {
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    Config::new(1, sender.public_bytes())
        .to_string()
        .into_bytes()
}

fn model() -> ModelInfo {
    ModelInfo {
        id: "smollm2-135m".into(),
        version: 3,
        sha384: [0x33; 48],
    }
}

fn server_params(model: ModelStatus) -> ServerParams {
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    ServerParams {
        build_id: [0xB1; 32],
        config: config_bytes(),
        model,
        key_release_public_key: sender.public_bytes(),
    }
}

fn client_params(purpose: Purpose) -> ClientParams {
    ClientParams {
        purpose,
        allow_simulated: true,
        simulated_measurements: alloc::vec![MEASUREMENT],
        expected_config: Some(config_bytes()),
    }
}

/// Both ends of one in-memory connection plus everything that crossed the wire.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    attester: SimulatedAttester,
    rng: ChaCha20Rng,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
}

impl Pair {
    fn new(purpose: Purpose, model: ModelStatus) -> Self {
        let mut rng = rng(1);
        let attester = SimulatedAttester::new(&mut rng, MEASUREMENT, &config_bytes());
        let client = ClientSession::new(client_params(purpose), &mut rng);
        Self {
            client,
            server: ServerSession::new(server_params(model)),
            attester,
            rng,
            to_server: Vec::new(),
            to_client: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Delivers pending bytes both ways until nothing moves.
    fn pump(&mut self) -> Result<(), ProtocolError> {
        loop {
            let c = self.client.take_output();
            let s = self.server.take_output();
            if c.is_empty() && s.is_empty() {
                return Ok(());
            }
            self.to_server.extend_from_slice(&c);
            self.to_client.extend_from_slice(&s);
            if !c.is_empty() {
                self.server.receive(&c, &mut self.rng, &mut self.attester)?;
            }
            if !s.is_empty() {
                self.client.receive(&s, &NoHardwareVerifier)?;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
        }
    }

    fn established(purpose: Purpose, model: ModelStatus) -> Self {
        let mut pair = Self::new(purpose, model);
        pair.pump().unwrap();
        assert!(matches!(
            pair.client_events.as_slice(),
            [ClientEvent::Established(_)]
        ));
        pair.client_events.clear();
        pair.server_events.clear();
        pair
    }

    fn answer_text(&self) -> Vec<u8> {
        let mut text = Vec::new();
        for e in &self.client_events {
            if let ClientEvent::AnswerText(t) = e {
                text.extend_from_slice(t);
            }
        }
        text
    }

    fn take_request(&mut self) -> Request {
        let idx = self
            .server_events
            .iter()
            .position(|e| matches!(e, ServerEvent::Request(_)))
            .expect("server saw no request");
        match self.server_events.remove(idx) {
            ServerEvent::Request(r) => r,
            _ => unreachable!(),
        }
    }
}

fn request(user: &str) -> Request {
    Request {
        max_new_tokens: 64,
        system: "be brief".into(),
        user: user.into(),
    }
}

/// The byte stream from the first record on, split into frames of the record size.
fn records_after_handshake(stream: &[u8], handshake_frame_type: u8) -> Vec<&[u8]> {
    assert_eq!(stream[4], handshake_frame_type);
    let first = 4 + u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
    let rest = &stream[first..];
    assert_eq!(
        rest.len() % RECORD_WIRE_LEN,
        0,
        "records are not all {RECORD_WIRE_LEN} bytes"
    );
    rest.chunks(RECORD_WIRE_LEN).collect()
}

/// Streams `tokens` with a dummy tick between some of them, returns the number of ticks.
fn stream_answer(pair: &mut Pair, tokens: &[&str]) -> usize {
    let mut ticks = 0;
    assert!(pair.server.tick().unwrap()); // nothing ready yet: a dummy
    ticks += 1;
    for (i, t) in tokens.iter().enumerate() {
        pair.server.push_token(t.as_bytes()).unwrap();
        if i % 3 == 0 {
            assert!(pair.server.tick().unwrap());
            ticks += 1;
        }
    }
    pair.server.finish_answer().unwrap();
    while pair.server.is_responding() {
        assert!(pair.server.tick().unwrap());
        ticks += 1;
    }
    assert!(
        !pair.server.tick().unwrap(),
        "no records once the answer ended"
    );
    pair.pump().unwrap();
    ticks
}

#[test]
fn full_session_streams_an_answer_with_dummies_and_an_authenticated_end() {
    let mut pair = Pair::new(Purpose::Chat, ModelStatus::Loaded(model()));
    pair.pump().unwrap();
    let info = match pair.client_events.remove(0) {
        ClientEvent::Established(info) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!(info.evidence.kind, EvidenceKind::Simulated);
    assert_eq!(info.evidence.measurement, MEASUREMENT.to_vec());
    assert_eq!(info.model, ModelStatus::Loaded(model()));
    assert_eq!(info.build_id, [0xB1; 32]);
    assert_eq!(info.config, config_bytes());
    assert!(matches!(
        pair.server_events.remove(0),
        ServerEvent::Established {
            purpose: Purpose::Chat
        }
    ));

    pair.client
        .send_request(&request("What is the capital of France?"))
        .unwrap();
    pair.pump().unwrap();
    let got = pair.take_request();
    assert_eq!(got, request("What is the capital of France?"));

    let tokens = ["The", " capital", " of", " France", " is", " Paris", "."];
    stream_answer(&mut pair, &tokens);
    assert_eq!(pair.answer_text(), b"The capital of France is Paris.");
    let end = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::AnswerEnd(end) => Some(*end),
        _ => None,
    });
    assert_eq!(end.unwrap().token_count, 7);
    assert_eq!(end.unwrap().answer_len, 31);

    // The session stays usable: a second request, then a clean close.
    pair.client_events.clear();
    pair.client.send_request(&request("again")).unwrap();
    pair.pump().unwrap();
    pair.take_request();
    stream_answer(&mut pair, &["ok"]);
    assert_eq!(pair.answer_text(), b"ok");
    pair.client.close().unwrap();
    pair.pump().unwrap();
    assert!(matches!(
        pair.server_events.last(),
        Some(ServerEvent::Closed)
    ));
    assert!(pair.server.is_finished());
    assert!(pair.client.transport_closed().is_ok());
    assert!(pair.server.transport_closed().is_ok());
}

#[test]
fn the_server_can_close_the_session() {
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::NotLoaded);
    pair.server.close().unwrap();
    pair.pump().unwrap();
    assert_eq!(pair.client_events.last(), Some(&ClientEvent::Closed));
    assert!(pair.client.is_finished());
    assert!(pair.client.transport_closed().is_ok());
}

#[test]
fn every_record_has_the_same_size_for_short_and_long_answers() {
    let mut sizes = Vec::new();
    for (prompt, n_tokens) in [("hi", 1usize), (&*"long prompt ".repeat(100), 400)] {
        let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
        pair.client.send_request(&request(prompt)).unwrap();
        pair.pump().unwrap();
        pair.take_request();
        let tokens: Vec<String> = (0..n_tokens).map(|i| alloc::format!(" tok{i}")).collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let ticks = stream_answer(&mut pair, &refs);
        pair.client.close().unwrap();
        pair.pump().unwrap();
        let down = records_after_handshake(&pair.to_client, frame::FRAME_SERVER_HELLO);
        let up = records_after_handshake(&pair.to_server, FRAME_CLIENT_HELLO);
        assert_eq!(down.len(), ticks, "one record per tick");
        for record in down.iter().chain(up.iter()) {
            assert_eq!(record.len(), RECORD_WIRE_LEN);
            assert_eq!(record[..5], [0, 0, 1, RECORD_FRAME_LEN as u8, FRAME_RECORD]);
        }
        sizes.push((down.len(), up.len()));
    }
    assert_eq!(RECORD_WIRE_LEN, 277);
    assert!(
        sizes[1].0 > sizes[0].0 && sizes[1].1 > sizes[0].1,
        "{sizes:?}"
    );
}

#[test]
fn cadence_off_flushes_ready_records() {
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
    pair.client.send_request(&request("x")).unwrap();
    pair.pump().unwrap();
    pair.take_request();
    let long = "y".repeat(600);
    pair.server.push_token(long.as_bytes()).unwrap();
    pair.server.flush_ready().unwrap();
    pair.pump().unwrap();
    assert_eq!(pair.answer_text().len(), 600);
    pair.server.finish_answer().unwrap();
    pair.server.flush_ready().unwrap();
    pair.pump().unwrap();
    assert!(
        matches!(pair.client_events.last(), Some(ClientEvent::AnswerEnd(e)) if e.token_count == 1)
    );
}

#[test]
fn errors_end_the_request_but_not_the_session() {
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::NotLoaded);
    for (code, text) in [
        (ErrorCode::Busy, ""),
        (ErrorCode::NoModelLoaded, ""),
        (ErrorCode::ModelNotLoaded, "chunk 3 does not authenticate"),
    ] {
        pair.client.send_request(&request("q")).unwrap();
        pair.pump().unwrap();
        pair.take_request();
        pair.server.send_error(code, text).unwrap();
        pair.pump().unwrap();
        assert_eq!(
            pair.client_events.pop(),
            Some(ClientEvent::Error {
                code,
                message: text.to_string()
            })
        );
    }
}

#[test]
fn model_status_reaches_the_client() {
    for status in [
        ModelStatus::NotLoaded,
        ModelStatus::Failed("wrong key".into()),
    ] {
        let mut pair = Pair::new(Purpose::Chat, status.clone());
        pair.pump().unwrap();
        assert!(matches!(&pair.client_events[0], ClientEvent::Established(i) if i.model == status));
    }
}

#[test]
fn request_reassembles_from_many_fragments_and_byte_by_byte_delivery() {
    let mut pair = Pair::new(Purpose::Chat, ModelStatus::Loaded(model()));
    // Deliver the handshake one byte at a time.
    let hello = pair.client.take_output();
    for b in &hello {
        pair.server
            .receive(core::slice::from_ref(b), &mut pair.rng, &mut pair.attester)
            .unwrap();
    }
    let server_hello = pair.server.take_output();
    for b in &server_hello {
        pair.client
            .receive(core::slice::from_ref(b), &NoHardwareVerifier)
            .unwrap();
    }
    let long = "é".repeat(1000); // 2000 bytes, a split inside a character at fragment borders
    pair.client.send_request(&request(&long)).unwrap();
    pair.pump().unwrap();
    assert_eq!(pair.take_request().user, long);
}

// ---- handshake rejections -------------------------------------------------------------

fn server_error_for(client_hello_body: &[u8]) -> (ProtocolError, Vec<u8>) {
    let mut server = ServerSession::new(server_params(ModelStatus::NotLoaded));
    let mut rng = rng(2);
    let mut attester = SimulatedAttester::new(&mut rng, MEASUREMENT, &config_bytes());
    let mut frame = Vec::new();
    frame::write_frame(&mut frame, FRAME_CLIENT_HELLO, client_hello_body);
    let err = server.receive(&frame, &mut rng, &mut attester).unwrap_err();
    (err, server.take_output())
}

#[test]
fn bad_version_is_refused_with_an_abort_the_client_reports() {
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut rng(1));
    let mut hello = client.take_output()[5..].to_vec();
    hello[1] = 2; // version 2
    let (err, abort) = server_error_for(&hello);
    assert_eq!(err, ProtocolError::UnsupportedVersion { version: 2 });
    assert_eq!(abort[4], frame::FRAME_ABORT);
    match client.receive(&abort, &NoHardwareVerifier).unwrap_err() {
        ProtocolError::Aborted { code: 1, reason } => assert!(reason.contains("version 2")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.receive(&[0], &NoHardwareVerifier).unwrap_err(),
        ProtocolError::Finished
    );
}

#[test]
fn unsupported_purpose_is_refused() {
    let mut hello = ClientSession::new(client_params(Purpose::Chat), &mut rng(1)).take_output();
    hello[5 + 2] = 9;
    let (err, _) = server_error_for(&hello[5..]);
    assert_eq!(err, ProtocolError::UnsupportedPurpose { purpose: 9 });
}

#[test]
fn oversize_frames_are_refused_from_the_header_alone() {
    // Server: a ClientHello claiming 4 GiB; only the 5 header bytes are ever given.
    let mut server = ServerSession::new(server_params(ModelStatus::NotLoaded));
    let mut r = rng(2);
    let mut attester = SimulatedAttester::new(&mut r, MEASUREMENT, &config_bytes());
    let err = server.receive(
        &[0xFF, 0xFF, 0xFF, 0xFF, FRAME_CLIENT_HELLO],
        &mut r,
        &mut attester,
    );
    assert_eq!(
        err.unwrap_err(),
        ProtocolError::FrameTooLarge {
            len: u32::MAX,
            max: 68
        }
    );
    // Client: a ServerHello over 64 KiB.
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut rng(1));
    let err = client.receive(&[0x00, 0x01, 0x00, 0x01, 0x02], &NoHardwareVerifier);
    assert_eq!(
        err.unwrap_err(),
        ProtocolError::FrameTooLarge {
            len: 65_537,
            max: 65_536
        }
    );
    // A frame type that does not belong in the state.
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut rng(1));
    let err = client.receive(&[0, 0, 1, 17, FRAME_RECORD], &NoHardwareVerifier);
    assert_eq!(
        err.unwrap_err(),
        ProtocolError::UnexpectedFrame {
            frame_type: FRAME_RECORD
        }
    );
}

/// Runs the handshake, letting `tamper` change the ServerHello bytes on the way.
fn client_result_with(
    params: ClientParams,
    server_config: Vec<u8>,
    attester_config: &[u8],
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Result<(), ProtocolError> {
    let mut r = rng(4);
    let mut client = ClientSession::new(params, &mut r);
    let mut params = server_params(ModelStatus::Loaded(model()));
    params.config = server_config;
    let mut server = ServerSession::new(params);
    let mut attester = SimulatedAttester::new(&mut r, MEASUREMENT, attester_config);
    server
        .receive(&client.take_output(), &mut r, &mut attester)
        .unwrap();
    let mut hello = server.take_output();
    tamper(&mut hello);
    client.receive(&hello, &NoHardwareVerifier)
}

fn evidence_error(result: Result<(), ProtocolError>) -> EvidenceRejected {
    match result.unwrap_err() {
        ProtocolError::Evidence(why) => why,
        other => panic!("{other:?}"),
    }
}

#[test]
fn simulated_evidence_is_refused_without_the_allow_flag() {
    let mut params = client_params(Purpose::Chat);
    params.allow_simulated = false;
    let why = evidence_error(client_result_with(
        params,
        config_bytes(),
        &config_bytes(),
        |_| {},
    ));
    assert_eq!(why, EvidenceRejected::SimulatedNotAllowed);
    assert!(alloc::format!("{why}").contains("--allow-simulated"));
}

#[test]
fn a_wrong_evidence_signature_is_refused() {
    let result = client_result_with(
        client_params(Purpose::Chat),
        config_bytes(),
        &config_bytes(),
        |h| {
            let last = h.len() - 1; // last byte of the Ed25519 signature
            h[last] ^= 1;
        },
    );
    assert_eq!(evidence_error(result), EvidenceRejected::BadSignature);
}

#[test]
fn a_changed_server_hello_field_breaks_report_data() {
    // The host flips a bit of the model version: the transcript no longer matches REPORT_DATA.
    let result = client_result_with(
        client_params(Purpose::Chat),
        config_bytes(),
        &config_bytes(),
        |h| {
            h[5 + 2 + 1 + 32 + 32 + 32 + 1 + 7] ^= 1;
        },
    );
    assert_eq!(evidence_error(result), EvidenceRejected::ReportDataMismatch);
}

#[test]
fn a_substituted_client_key_breaks_report_data() {
    let mut r = rng(4);
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut r);
    let mut server = ServerSession::new(server_params(ModelStatus::NotLoaded));
    let mut attester = SimulatedAttester::new(&mut r, MEASUREMENT, &config_bytes());
    let mut hello = client.take_output();
    // The host replaces the client's X25519 key with its own.
    let host_key = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9; 32]));
    hello[5 + 35..].copy_from_slice(host_key.as_bytes());
    server.receive(&hello, &mut r, &mut attester).unwrap();
    let why = evidence_error(client.receive(&server.take_output(), &NoHardwareVerifier));
    assert_eq!(why, EvidenceRejected::ReportDataMismatch);
}

#[test]
fn evidence_for_another_configuration_or_measurement_is_refused() {
    let other = b"min_model_version = 0\n".to_vec();
    let result = client_result_with(client_params(Purpose::Chat), config_bytes(), &other, |_| {});
    assert_eq!(evidence_error(result), EvidenceRejected::ConfigMismatch);

    let mut params = client_params(Purpose::Chat);
    params.expected_config = Some(other.clone());
    let result = client_result_with(params, config_bytes(), &config_bytes(), |_| {});
    assert_eq!(evidence_error(result), EvidenceRejected::UnexpectedConfig);

    let mut params = client_params(Purpose::Chat);
    params.simulated_measurements = alloc::vec![[0x22; 48]];
    let result = client_result_with(params, config_bytes(), &config_bytes(), |_| {});
    assert_eq!(
        evidence_error(result),
        EvidenceRejected::MeasurementNotAllowed
    );
}

#[test]
fn hardware_evidence_goes_to_the_verifier() {
    struct Refuses;
    impl EvidenceVerifier for Refuses {
        fn verify(
            &self,
            e: &Evidence,
            b: &Binding<'_>,
        ) -> Result<VerifiedEvidence, EvidenceRejected> {
            assert_eq!(e.kind, EvidenceKind::SevSnp);
            assert_eq!(b.config, config_bytes().as_slice());
            Err(EvidenceRejected::Policy("debug bit set".into()))
        }
    }
    struct FakeSnp;
    impl EvidenceProvider for FakeSnp {
        fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String> {
            Ok(Evidence {
                kind: EvidenceKind::SevSnp,
                bytes: report_data.to_vec(),
            })
        }
    }
    let mut r = rng(5);
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut r);
    let mut server = ServerSession::new(server_params(ModelStatus::NotLoaded));
    server
        .receive(&client.take_output(), &mut r, &mut FakeSnp)
        .unwrap();
    let hello = server.take_output();
    let err = client.receive(&hello, &Refuses).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::Evidence(EvidenceRejected::Policy("debug bit set".into()))
    );
    let mut client = ClientSession::new(client_params(Purpose::Chat), &mut r);
    let mut server = ServerSession::new(server_params(ModelStatus::NotLoaded));
    server
        .receive(&client.take_output(), &mut r, &mut FakeSnp)
        .unwrap();
    let err = client
        .receive(&server.take_output(), &NoHardwareVerifier)
        .unwrap_err();
    assert_eq!(
        err,
        ProtocolError::Evidence(EvidenceRejected::NoVerifier(EvidenceKind::SevSnp))
    );
}

// ---- record-layer attacks ------------------------------------------------------------

/// A session mid-answer: the server's next records are returned without being delivered.
fn answer_records(n_tokens: usize) -> (Pair, Vec<Vec<u8>>) {
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
    pair.client.send_request(&request("q")).unwrap();
    pair.pump().unwrap();
    pair.take_request();
    let mut records = Vec::new();
    for i in 0..n_tokens {
        pair.server
            .push_token(alloc::format!("t{i} ").as_bytes())
            .unwrap();
        pair.server.tick().unwrap();
        records.push(pair.server.take_output());
    }
    (pair, records)
}

#[test]
fn a_replayed_record_ends_the_session() {
    let (mut pair, records) = answer_records(2);
    pair.client
        .receive(&records[0], &NoHardwareVerifier)
        .unwrap();
    let err = pair
        .client
        .receive(&records[0], &NoHardwareVerifier)
        .unwrap_err();
    assert_eq!(err, ProtocolError::RecordAuthentication { seq: 1 });
    assert_eq!(
        pair.client.receive(&records[1], &NoHardwareVerifier),
        Err(ProtocolError::Finished)
    );

    // Replaying a request record towards the server, too.
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
    pair.client.send_request(&request("q")).unwrap();
    let up = pair.client.take_output();
    pair.server
        .receive(&up, &mut pair.rng, &mut pair.attester)
        .unwrap();
    let err = pair
        .server
        .receive(&up, &mut pair.rng, &mut pair.attester)
        .unwrap_err();
    assert_eq!(err, ProtocolError::RecordAuthentication { seq: 1 });
}

#[test]
fn reordered_and_dropped_records_end_the_session() {
    let (mut pair, records) = answer_records(3);
    let err = pair
        .client
        .receive(&records[1], &NoHardwareVerifier)
        .unwrap_err();
    assert_eq!(err, ProtocolError::RecordAuthentication { seq: 0 });

    let (mut pair, records) = answer_records(3);
    pair.client
        .receive(&records[0], &NoHardwareVerifier)
        .unwrap();
    let err = pair
        .client
        .receive(&records[2], &NoHardwareVerifier)
        .unwrap_err(); // [1] dropped
    assert_eq!(err, ProtocolError::RecordAuthentication { seq: 1 });
}

#[test]
fn an_altered_record_ends_the_session() {
    let (mut pair, mut records) = answer_records(1);
    records[0][100] ^= 0x40;
    let err = pair
        .client
        .receive(&records[0], &NoHardwareVerifier)
        .unwrap_err();
    assert_eq!(err, ProtocolError::RecordAuthentication { seq: 0 });
}

#[test]
fn a_truncated_stream_is_reported() {
    let (mut pair, records) = answer_records(2);
    pair.client
        .receive(&records[0], &NoHardwareVerifier)
        .unwrap();
    // The host cuts the connection (or sends half a record and then closes).
    pair.client
        .receive(&records[1][..100], &NoHardwareVerifier)
        .unwrap();
    assert_eq!(
        pair.client.transport_closed(),
        Err(ProtocolError::Truncated)
    );
    // The server sees a client that vanished without Close the same way.
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
    assert_eq!(
        pair.server.transport_closed(),
        Err(ProtocolError::Truncated)
    );
}

#[test]
fn a_record_of_the_wrong_size_ends_the_session() {
    let (mut pair, records) = answer_records(1);
    let mut short = records[0][..RECORD_WIRE_LEN - 1].to_vec();
    short[3] -= 1; // a consistent frame, one byte shorter than every record
    let err = pair
        .client
        .receive(&short, &NoHardwareVerifier)
        .unwrap_err();
    assert_eq!(
        err,
        ProtocolError::RecordSize {
            len: RECORD_FRAME_LEN - 1,
            expected: RECORD_FRAME_LEN
        }
    );
}

#[test]
fn misuse_and_out_of_place_records_are_errors() {
    let mut pair = Pair::established(Purpose::Chat, ModelStatus::Loaded(model()));
    assert!(matches!(
        pair.server.push_token(b"x"),
        Err(ProtocolError::InvalidState(_))
    ));
    assert!(matches!(
        pair.server.send_error(ErrorCode::Busy, ""),
        Err(ProtocolError::InvalidState(_))
    ));
    pair.client.send_request(&request("q")).unwrap();
    // A second request while one is pending is refused locally ...
    assert!(matches!(
        pair.client.send_request(&request("q")),
        Err(ProtocolError::InvalidState(_))
    ));
    // ... and key release is not for a chat session.
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    let key = ModelKey::from_bytes([1; 32]);
    assert!(matches!(
        pair.client.send_key_release(&mut rng(9), &sender, &key),
        Err(ProtocolError::InvalidState(_))
    ));
}

// ---- key release over the session ----------------------------------------------------

#[test]
fn key_release_round_trip_over_the_session() {
    let mut pair = Pair::established(Purpose::KeyRelease, ModelStatus::NotLoaded);
    let info = pair.client.session_info().unwrap().clone();
    assert!(info.release_public.is_some());
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    // The tool checks that the bound configuration names its key.
    let config = Config::parse(&info.config).unwrap();
    assert_eq!(config.key_release_public_key, sender.public_bytes());

    let key = ModelKey::from_bytes([0x5A; 32]);
    pair.client
        .send_key_release(&mut rng(7), &sender, &key)
        .unwrap();
    pair.pump().unwrap();
    let released = pair.server_events.iter().find_map(|e| match e {
        ServerEvent::ModelKey(k) => Some(k.clone()),
        _ => None,
    });
    assert_eq!(released.unwrap().as_bytes(), key.as_bytes());
    pair.server.send_key_release_result(&model()).unwrap();
    pair.pump().unwrap();
    assert_eq!(
        pair.client_events.pop(),
        Some(ClientEvent::KeyReleaseResult(model()))
    );
}

#[test]
fn key_release_from_another_sender_is_refused() {
    let mut pair = Pair::established(Purpose::KeyRelease, ModelStatus::NotLoaded);
    let impostor = ReleaseKeyPair::from_secret_bytes(&[0x43; 32]).unwrap();
    pair.client
        .send_key_release(&mut rng(7), &impostor, &ModelKey::from_bytes([1; 32]))
        .unwrap();
    pair.pump().unwrap();
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::ModelKey(_)))
    );
    assert!(matches!(
        pair.client_events.pop(),
        Some(ClientEvent::Error {
            code: ErrorCode::KeyReleaseRefused,
            ..
        })
    ));
}

#[test]
fn a_failed_model_load_after_key_release_is_reported() {
    let mut pair = Pair::established(Purpose::KeyRelease, ModelStatus::NotLoaded);
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    pair.client
        .send_key_release(&mut rng(7), &sender, &ModelKey::from_bytes([2; 32]))
        .unwrap();
    pair.pump().unwrap();
    pair.server
        .send_error(
            ErrorCode::ModelNotLoaded,
            "sealed header does not authenticate",
        )
        .unwrap();
    pair.pump().unwrap();
    assert_eq!(
        pair.client_events.pop(),
        Some(ClientEvent::Error {
            code: ErrorCode::ModelNotLoaded,
            message: "sealed header does not authenticate".into()
        })
    );
}

#[test]
fn a_request_never_shows_its_text_in_debug_output() {
    let shown = alloc::format!("{:?}", request("my secret prompt"));
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("16 bytes"), "{shown}");
}
