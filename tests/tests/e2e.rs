//! End-to-end tests of the main job (issue 4): the enclave boots under QEMU with a sealed model
//! on its virtio disk, receives the model key through an attested key release, and answers over
//! attested, encrypted vsock sessions — driven by the `ward` binary (`target/release/ward`, built
//! by the same `cargo run --release -p ward-tools -- build` that builds the image, or
//! `$WARD_BIN`) and by the client library.
//!
//! A tiny generated model (`ward_tools::tiny_model`) keeps the guest fast under TCG; one test
//! uses the real default model with a short answer. VMs are booted one at a time.
//!
//! - `served_enclave`: simulated evidence refused without `--allow-simulated`; "no model loaded"
//!   before the release; a release sealed by another key-release server refused; a wrong model
//!   key refused ("model not loaded: ..."), then the right one accepted (`ward release-key`);
//!   a greedy answer identical to `ward generate`'s; "busy" beyond slots + queue while the others
//!   are served; replayed, reordered and truncated records (man-in-the-middle relay) reported by
//!   the client; every record on the wire the same size for a short and a long answer.
//! - `tampered_disks_and_rollback_are_refused`: a flipped byte in the header and in a middle
//!   chunk, and a version below the configured minimum, each leave only "model not loaded:
//!   <reason>".
//! - `too_little_memory_for_the_slots_is_refused`: slots whose KV caches and batch scratch do not
//!   fit beside the weights leave "model not loaded: needs N MiB, have M MiB (...)".
//! - `default_model_answers`: SmolLM2 inside the enclave gives `ward generate`'s greedy tokens.

use rand_chacha::rand_core::Rng;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::Duration;
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{
    ClientParams, ErrorCode, NoHardwareVerifier, ProtocolError, Purpose, RECORD_WIRE_LEN,
};
use ward_attestation::sealed::ModelKey;
use ward_tests::TempDir;
use ward_tests::enclave::{
    Enclave, IO_TIMEOUT, Owner, TINY_VERSION, chat_params, chat_session, host_greedy, json_text,
    path_str, request, ward, ward_model,
};
use ward_tools::client::{Address, ClientError, Connection, SERVICE_PORT, connect, os_rng};
use ward_tools::tiny_model::{TinyModelSpec, tiny_model_gguf};

/// What the relay does to the records flowing from the enclave to the client.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// Send the record at this index (counted from the first record) twice.
    Replay(usize),
    /// Swap the records at this index and the next.
    Reorder(usize),
    /// Stop forwarding after this many records and close the stream.
    Truncate(usize),
}

/// A man-in-the-middle relay on a Unix socket, between the client and the hybrid-vsock socket:
/// forwards the client's bytes as they are and applies `attack` to the enclave's records.
fn relay(dir: &Path, uds: &Path, attack: Attack) -> Address {
    let path = dir.join(format!("relay-{}.sock", rand_suffix()));
    let listener = UnixListener::bind(&path).unwrap();
    let uds = uds.to_path_buf();
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let mut upstream = UnixStream::connect(&uds).unwrap();
        // The CONNECT line and its answer pass through unchanged.
        let mut client_reader = client.try_clone().unwrap();
        let mut to_enclave = upstream.try_clone().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = client_reader.read(&mut buffer) {
                if n == 0 || to_enclave.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to_enclave.shutdown(std::net::Shutdown::Write);
        });
        let mut to_client = client;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while upstream.read_exact(&mut byte).is_ok() {
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        to_client.write_all(&line).unwrap();
        let mut index = 0usize;
        let mut held: Option<Vec<u8>> = None;
        loop {
            let mut header = [0u8; 5];
            if upstream.read_exact(&mut header).is_err() {
                break;
            }
            let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
            let mut frame = header.to_vec();
            frame.resize(4 + len, 0);
            if upstream.read_exact(&mut frame[5..]).is_err() {
                break;
            }
            if header[4] != 0x03 {
                // Handshake frames pass.
                to_client.write_all(&frame).unwrap();
                continue;
            }
            let this = index;
            index += 1;
            let ok = match attack {
                Attack::Replay(at) if this == at => to_client
                    .write_all(&frame)
                    .and_then(|()| to_client.write_all(&frame)),
                Attack::Reorder(at) if this == at => {
                    held = Some(frame);
                    Ok(())
                }
                Attack::Reorder(at) if this == at + 1 => to_client
                    .write_all(&frame)
                    .and_then(|()| to_client.write_all(&held.take().unwrap())),
                Attack::Truncate(at) if this >= at => break,
                _ => to_client.write_all(&frame),
            };
            if ok.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    Address::HybridUnix {
        path,
        port: SERVICE_PORT,
    }
}

fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    os_rng().unwrap().fill_bytes(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Every Record frame in `captured` after the handshake, by length.
fn record_lengths(captured: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut at = 0;
    while at + 5 <= captured.len() {
        let len = u32::from_be_bytes(captured[at..at + 4].try_into().unwrap()) as usize;
        if captured[at + 4] == 0x03 {
            lengths.push(4 + len);
        }
        at += 4 + len;
    }
    assert_eq!(
        at,
        captured.len(),
        "captured stream ends on a frame boundary"
    );
    lengths
}

#[test]
fn served_enclave() {
    assert_eq!(SERVICE_PORT, ward_kernel::service::SERVICE_PORT);
    let owner = Owner::tiny("e2e-served", &TinyModelSpec::default());
    let config = owner.config(2, |c| {
        c.slots = 1;
        c.queue = 1;
        c.cadence_ms = 20;
    });
    let enclave = Enclave::boot(&config, &owner.disk, 512, 1);
    let addr = enclave.addr();

    // Simulated evidence is refused unless allowed, before anything is sent.
    let refused = ward(&["chat", "--connect", &addr, "hello"]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("evidence rejected") && text.contains("SIMULATED"),
        "{text}"
    );

    // No model before a key release.
    let early = ward(&["chat", "--connect", &addr, "--allow-simulated", "hello"]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("no model loaded"));

    // A release sealed by a key-release server other than the configured one is refused,
    // and `ward release-key` itself refuses to release to an enclave bound to another server.
    let stranger_dir = TempDir::new("e2e-stranger");
    let stranger_file = stranger_dir.path().join("stranger.key");
    assert!(
        ward(&["keygen", "--out", path_str(&stranger_file)])
            .status
            .success()
    );
    let not_ours = ward(&[
        "release-key",
        "--connect",
        &addr,
        "--key",
        path_str(&owner.key_file),
        "--sender-key",
        path_str(&stranger_file),
        "--allow-simulated",
    ]);
    assert!(!not_ours.status.success());
    assert!(String::from_utf8_lossy(&not_ours.stderr).contains("refusing to release"));
    let stranger = ReleaseKeyPair::from_secret_bytes(
        &std::fs::read(&stranger_file).unwrap().try_into().unwrap(),
    )
    .unwrap();
    let verifier = NoHardwareVerifier;
    let release_with = |sender: &ReleaseKeyPair, key: &ModelKey| {
        let stream = connect(&enclave.address, Duration::from_secs(10)).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut rng = os_rng().unwrap();
        let params = ClientParams {
            purpose: Purpose::KeyRelease,
            ..chat_params()
        };
        let (mut connection, _) =
            Connection::handshake(stream, params, &verifier, &mut rng, false).unwrap();
        connection.release_key(&mut rng, sender, key)
    };
    match release_with(&stranger, &owner.key) {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::KeyReleaseRefused),
        other => panic!("{other:?}"),
    }
    // The wrong model key: the header does not authenticate; nothing loads.
    match release_with(&owner.sender, &ModelKey::from_bytes([0x5a; 32])) {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.contains("header"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let failed = ward(&["chat", "--connect", &addr, "--allow-simulated", "hello"]);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("model not loaded:"));

    // The right key, through `ward release-key` with the expected configuration pinned.
    let released = ward(&[
        "release-key",
        "--connect",
        &addr,
        "--key",
        path_str(&owner.key_file),
        "--sender-key",
        path_str(&owner.sender_file),
        "--config",
        path_str(&config),
        "--allow-simulated",
    ]);
    assert!(released.status.success());
    assert!(String::from_utf8_lossy(&released.stdout).contains("ward-tiny version 3"));

    // A greedy answer identical to the host's.
    let question = "Why is the sky blue?";
    let expected = host_greedy(&owner.gguf, question, 24);
    assert!(!expected.is_empty());
    let answer = ward(&[
        "chat",
        "--connect",
        &addr,
        "--allow-simulated",
        "--json",
        "--max-tokens",
        "24",
        question,
    ]);
    assert!(answer.status.success());
    assert_eq!(json_text(&answer), expected);
    let stdout = String::from_utf8_lossy(&answer.stdout).into_owned();
    assert!(stdout.contains("\"evidence\":\"simulated\""), "{stdout}");
    assert!(stdout.contains("\"version\":3"), "{stdout}");

    // Busy: one slot, a queue of one, three requests at once.
    let all_connected = std::sync::Barrier::new(3);
    let outcomes: Vec<Result<Vec<u8>, ClientError>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let verifier = NoHardwareVerifier;
                    let mut session = chat_session(&enclave.address, &verifier);
                    all_connected.wait();
                    session.ask(&request("count", 12), |_| {}).map(|a| a.text)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(ClientError::Server {
                    code: ErrorCode::Busy,
                    ..
                })
            )
        })
        .count();
    let served = outcomes
        .iter()
        .filter(|o| {
            o.as_ref()
                .is_ok_and(|t| String::from_utf8_lossy(t) == host_greedy(&owner.gguf, "count", 12))
        })
        .count();
    assert_eq!((busy, served), (1, 2), "{outcomes:?}");

    // On the wire every record has the same size, for a short and a long answer.
    for max in [1, 40] {
        let mut session = chat_session(&enclave.address, &verifier);
        let answer = session
            .ask(&request("Tell me a story.", max), |_| {})
            .unwrap();
        let lengths = record_lengths(session.captured().unwrap());
        assert!(lengths.len() >= 2, "{lengths:?}");
        assert!(
            lengths.iter().all(|&l| l == RECORD_WIRE_LEN),
            "{max} tokens ({} bytes): {lengths:?}",
            answer.text.len()
        );
        eprintln!(
            "{max} tokens: {} bytes of answer in {} records of {RECORD_WIRE_LEN} bytes",
            answer.text.len(),
            lengths.len()
        );
    }

    // A man in the middle replaying, reordering or cutting records is caught.
    let relay_dir = TempDir::new("e2e-relay");
    for attack in [Attack::Replay(1), Attack::Reorder(1), Attack::Truncate(2)] {
        let address = relay(relay_dir.path(), &enclave.uds, attack);
        let mut session = chat_session(&address, &verifier);
        let result = session.ask(&request("Tell me a story.", 30), |_| {});
        match (attack, result) {
            (
                Attack::Replay(_) | Attack::Reorder(_),
                Err(ClientError::Protocol(ProtocolError::RecordAuthentication { .. })),
            )
            | (Attack::Truncate(_), Err(ClientError::Protocol(ProtocolError::Truncated))) => {}
            (attack, other) => panic!("{attack:?}: {other:?}"),
        }
    }
    drop(enclave);
}

/// A change to a sealed image.
type Tamper = fn(&mut Vec<u8>);

#[test]
fn tampered_disks_and_rollback_are_refused() {
    let gguf = tiny_model_gguf(&TinyModelSpec::default());
    let cases: [(&str, u64, Tamper, &str); 3] = [
        ("header", TINY_VERSION, |image| image[20] ^= 1, "header"),
        (
            "chunk",
            TINY_VERSION,
            |image| {
                let middle = 4096 + image.len() / 2;
                image[middle] ^= 1;
            },
            "chunk",
        ),
        ("rollback", 1, |_| {}, "below"),
    ];
    for (tag, version, tamper, reason) in cases {
        let owner = Owner::new(
            &format!("e2e-{tag}"),
            "ward-tiny",
            gguf.clone(),
            version,
            tamper,
        );
        let config = owner.config(2, |_| {});
        let enclave = Enclave::boot(&config, &owner.disk, 512, 1);
        let addr = enclave.addr();
        let release = owner.release_key(&addr);
        assert!(!release.status.success(), "{tag}");
        let stderr = String::from_utf8_lossy(&release.stderr);
        assert!(
            stderr.contains("model not loaded:") && stderr.contains(reason),
            "{tag}: {stderr}"
        );
        let chat = ward(&["chat", "--connect", &addr, "--allow-simulated", "hello"]);
        assert!(!chat.status.success());
        let stderr = String::from_utf8_lossy(&chat.stderr);
        assert!(
            stderr.contains("model not loaded:") && stderr.contains(reason),
            "{tag}: {stderr}"
        );
    }
}

#[test]
fn too_little_memory_for_the_slots_is_refused() {
    // 64 slots of the tiny model: each slot's prefill chunk of 512 rows in the batch scratch
    // alone takes ~190 MiB, more than a 128 MiB VM has beside the weights.
    let owner = Owner::tiny("e2e-memory", &TinyModelSpec::default());
    let config = owner.config(2, |c| c.slots = 64);
    let enclave = Enclave::boot(&config, &owner.disk, 128, 1);
    let release = owner.release_key(&enclave.addr());
    assert!(!release.status.success());
    let stderr = String::from_utf8_lossy(&release.stderr);
    let reason = stderr
        .split("model not loaded: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    let figure = |word: &str| -> u64 {
        let after = reason
            .split(word)
            .nth(1)
            .unwrap_or_else(|| panic!("{reason}"));
        after.split(' ').next().unwrap().parse().unwrap()
    };
    let (needed, have) = (figure("needs "), figure("have "));
    assert!(needed > have && have < 128, "{reason}");
    assert!(reason.contains("64 slots of 512 positions"), "{reason}");
}

#[test]
fn default_model_answers() {
    let model = ward_model();
    let owner = Owner::new(
        "e2e-smollm",
        "SmolLM2-135M-Instruct-Q4_1",
        std::fs::read(&model).unwrap(),
        1,
        |_| {},
    );
    let config = owner.config(1, |c| {
        c.slots = 1;
        c.queue = 1;
    });
    // Two CPUs: the service splits each batched engine step across the kernel's SMP pool, and
    // the answer must still be the host's.
    let enclave = Enclave::boot(&config, &owner.disk, 1024, 2);
    assert!(
        enclave.serial().contains("engine on 2 CPUs"),
        "{}",
        enclave.serial()
    );
    let addr = enclave.addr();
    let released = owner.release_key(&addr);
    assert!(released.status.success());
    // TCG runs the engine at seconds per token here: a short prompt, two tokens.
    let (system, question, max) = ("Be brief.", "Hi", 2);
    let prompt = format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    );
    let generated = ward(&[
        "generate",
        "--model",
        path_str(&model),
        "--prompt",
        &prompt,
        "--max-tokens",
        &max.to_string(),
        "--temperature",
        "0",
    ]);
    assert!(generated.status.success());
    let expected = json_text(&generated);
    assert!(!expected.is_empty());
    let answer = ward(&[
        "chat",
        "--connect",
        &addr,
        "--allow-simulated",
        "--json",
        "--system",
        system,
        "--max-tokens",
        &max.to_string(),
        question,
    ]);
    assert!(answer.status.success());
    assert_eq!(json_text(&answer), expected);
}
