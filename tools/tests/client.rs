//! The host client against the enclave's server state machine, over real sockets: a socketpair,
//! and a hybrid-vsock Unix socket with the CONNECT/OK exchange.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{
    ClientParams, ErrorCode, EvidenceRejected, ModelInfo, ModelStatus, NoHardwareVerifier,
    ProtocolError, Purpose, RECORD_WIRE_LEN, Request, ServerEvent, ServerParams, ServerSession,
    SessionInfo, SimulatedAttester,
};
use ward_attestation::sealed::ModelKey;
use ward_tools::client::{Address, ClientError, Connection, Stream, connect};

const CONFIG: &[u8] = b"min_model_version = 1\n";
const SENDER_SECRET: [u8; 32] = [0x42; 32];
const KEY: [u8; 32] = [0x5A; 32];

#[derive(Clone, Default)]
struct Script {
    tokens: Vec<&'static str>,
    busy: bool,
    /// Stop writing (and drop the connection) after this many answer records.
    cut_after_records: Option<usize>,
}

fn model() -> ModelInfo {
    ModelInfo {
        id: "tiny".into(),
        version: 3,
        sha384: [0x33; 48],
    }
}

/// The enclave side: a `ServerSession` driven over `stream`, one record per cadence tick.
fn serve(mut stream: UnixStream, script: Script) {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut attester = SimulatedAttester::new(&mut rng, [0x11; 48], CONFIG);
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    let mut server = ServerSession::new(ServerParams {
        build_id: [0xB1; 32],
        config: CONFIG.to_vec(),
        model: ModelStatus::Loaded(model()),
        key_release_public_key: sender.public_bytes(),
    });
    let mut buf = [0u8; 4096];
    let mut records_sent = 0usize;
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return;
        }
        let ok = server.receive(&buf[..n], &mut rng, &mut attester).is_ok();
        let _ = stream.write_all(&server.take_output());
        if !ok {
            return;
        }
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::Request(_) if script.busy => {
                    server.send_error(ErrorCode::Busy, "").unwrap();
                }
                ServerEvent::Request(_) => {
                    for (i, token) in script.tokens.iter().enumerate() {
                        server.push_token(token.as_bytes()).unwrap();
                        if i % 2 == 0 {
                            server.tick().unwrap(); // some ticks carry text, some a dummy
                        }
                        server.tick().unwrap();
                        records_sent += 2;
                        if script
                            .cut_after_records
                            .is_some_and(|cut| records_sent >= cut)
                        {
                            let _ = stream.write_all(&server.take_output());
                            return; // the host drops the connection mid-answer
                        }
                        let _ = stream.write_all(&server.take_output());
                        thread::sleep(Duration::from_millis(1));
                    }
                    server.finish_answer().unwrap();
                    while server.is_responding() {
                        server.tick().unwrap();
                    }
                }
                ServerEvent::ModelKey(key) => {
                    assert_eq!(key.as_bytes(), &KEY);
                    server.send_key_release_result(&model()).unwrap();
                }
                ServerEvent::Closed => return,
                ServerEvent::Established { .. } => {}
            }
        }
        let _ = stream.write_all(&server.take_output());
    }
}

fn params(purpose: Purpose, allow_simulated: bool) -> ClientParams {
    ClientParams {
        purpose,
        allow_simulated,
        simulated_measurements: vec![[0x11; 48]],
        expected_config: Some(CONFIG.to_vec()),
    }
}

/// A client handshake that accepts the scripted server's simulated evidence.
fn simulated_handshake<S: Read + Write>(
    stream: S,
    purpose: Purpose,
    rng: &mut ChaCha20Rng,
    capture: bool,
) -> (Connection<'static, S>, SessionInfo) {
    Connection::handshake(
        stream,
        params(purpose, true),
        &NoHardwareVerifier,
        rng,
        capture,
    )
    .unwrap()
}

fn pair(script: Script) -> (UnixStream, thread::JoinHandle<()>) {
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (client, thread::spawn(move || serve(server, script)))
}

fn request(text: &str) -> Request {
    Request {
        max_new_tokens: 32,
        system: String::new(),
        user: text.into(),
    }
}

#[test]
fn chat_over_a_socketpair_streams_the_answer_in_equal_records() {
    let tokens = vec!["Paris", " is", " the", " capital", " of", " France", "."];
    let (stream, server) = pair(Script {
        tokens: tokens.clone(),
        ..Script::default()
    });
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (mut conn, info) = simulated_handshake(stream, Purpose::Chat, &mut rng, true);
    assert_eq!(info.model, ModelStatus::Loaded(model()));
    let mut streamed = Vec::new();
    let answer = conn
        .ask(&request("capital of France?"), |t| {
            streamed.extend_from_slice(t)
        })
        .unwrap();
    assert_eq!(answer.text, tokens.concat().as_bytes());
    assert_eq!(streamed, answer.text);
    assert_eq!(answer.end.token_count, tokens.len() as u32);

    // On the wire: after the ServerHello, every record read has the same size.
    let wire = conn.captured().unwrap().to_vec();
    let hello_len = 4 + u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
    let records = &wire[hello_len..];
    assert_eq!(records.len() % RECORD_WIRE_LEN, 0);
    assert!(records.len() / RECORD_WIRE_LEN > tokens.len());
    for record in records.chunks(RECORD_WIRE_LEN) {
        assert_eq!(record[..5], wire[hello_len..hello_len + 5]);
    }
    conn.close().unwrap();
    server.join().unwrap();
}

#[test]
fn busy_is_reported_and_simulated_evidence_needs_the_flag() {
    let (stream, server) = pair(Script {
        busy: true,
        ..Script::default()
    });
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (mut conn, _) = simulated_handshake(stream, Purpose::Chat, &mut rng, false);
    match conn.ask(&request("hi"), |_| {}) {
        Err(ClientError::Server {
            code: ErrorCode::Busy,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    conn.close().unwrap();
    server.join().unwrap();

    let (stream, server) = pair(Script::default());
    match Connection::handshake(
        stream,
        params(Purpose::Chat, false),
        &NoHardwareVerifier,
        &mut rng,
        false,
    ) {
        Err(
            e @ ClientError::Protocol(ProtocolError::Evidence(
                EvidenceRejected::SimulatedNotAllowed,
            )),
        ) => {
            assert!(e.to_string().contains("--allow-simulated"));
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("simulated evidence accepted without the flag"),
    }
    server.join().unwrap();
}

#[test]
fn a_connection_cut_mid_answer_is_a_truncation() {
    let script = Script {
        tokens: vec!["a", "b", "c", "d"],
        cut_after_records: Some(4),
        ..Script::default()
    };
    let (stream, server) = pair(script);
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (mut conn, _) = simulated_handshake(stream, Purpose::Chat, &mut rng, false);
    match conn.ask(&request("hi"), |_| {}) {
        Err(e @ ClientError::Protocol(ProtocolError::Truncated)) => {
            assert!(e.to_string().contains("truncated"));
        }
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn key_release_over_a_socketpair() {
    let (stream, server) = pair(Script::default());
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (mut conn, info) = simulated_handshake(stream, Purpose::KeyRelease, &mut rng, false);
    assert!(info.release_public.is_some());
    let sender = ReleaseKeyPair::from_secret_bytes(&SENDER_SECRET).unwrap();
    let loaded = conn
        .release_key(&mut rng, &sender, &ModelKey::from_bytes(KEY))
        .unwrap();
    assert_eq!(loaded, model());
    conn.close().unwrap();
    server.join().unwrap();
}

fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ward-client-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A stand-in for vhost-device-vsock: checks the CONNECT line arrives whole in one read and
/// alone, then answers OK (or closes, when nothing "listens" on the port).
fn hybrid_daemon(path: &PathBuf, listening: bool, script: Script) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = [0u8; 64];
        let n = stream.read(&mut line).unwrap();
        assert_eq!(&line[..n], b"CONNECT 5000\n");
        if listening {
            stream.write_all(b"OK 5000\n").unwrap();
            serve(stream, script);
        }
    })
}

#[test]
fn hybrid_vsock_connect_then_chat() {
    let path = socket_path("ok");
    let daemon = hybrid_daemon(
        &path,
        true,
        Script {
            tokens: vec!["hello"],
            ..Script::default()
        },
    );
    let address: Address = format!("unix://{}:5000", path.display()).parse().unwrap();
    let stream = connect(&address, Duration::from_secs(5)).unwrap();
    assert!(matches!(stream, Stream::Unix(_)));
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (mut conn, _) = simulated_handshake(stream, Purpose::Chat, &mut rng, false);
    assert_eq!(conn.ask(&request("hi"), |_| {}).unwrap().text, b"hello");
    conn.close().unwrap();
    daemon.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn hybrid_vsock_with_nothing_listening_is_a_clear_error() {
    let path = socket_path("refused");
    let daemon = hybrid_daemon(&path, false, Script::default());
    let address: Address = format!("unix://{}:5000", path.display()).parse().unwrap();
    let err = connect(&address, Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string()
            .contains("nothing listens on guest port 5000"),
        "{err}"
    );
    daemon.join().unwrap();
    let _ = std::fs::remove_file(&path);
    // And no daemon at all.
    let err = connect(&address, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}
