//! Boot test of the virtio drivers end to end (kernel `drivers::virtio`): the deployment
//! configuration asks for the device self-check (`test_devices = true`), the disk holds random
//! bytes generated here, and the host side of vsock is driven like a client would
//! (hybrid vsock: `CONNECT <port>\n` in one write, `OK <port>\n` back).
//!
//! Checks: the SHA-256 the kernel prints equals the disk's; a read past the end is refused; a
//! connection to a port nobody listens on is refused; the echo on port 5000 returns exactly what
//! was sent (small messages and one larger than a packet and the peer's initial credit would
//! need several packets for); the kernel reports the peer's close and exits successfully.

use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use ward_tests::{TempDir, dev_config, vm_config, write_config};
use ward_tools::qemu::{RunningVm, SerialSink};

/// Bytes the kernel hashes (`selfcheck::DISK_CHECK_BYTES`).
const HASHED_BYTES: usize = 3 << 20;
/// Disk size: more than is hashed, and not a multiple of the kernel's 1 MiB request size.
const DISK_BYTES: usize = (4 << 20) + 3 * 512;
const ECHO_PORT: u32 = 5000;
const LISTEN_TIMEOUT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Pseudo-random bytes (SplitMix64) from `seed`.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Connects to guest `port`; returns the stream and the reply line (without `\n`), or `None`
/// for the reply when the socket closed without one.
fn connect(uds: &Path, port: u32) -> (UnixStream, Option<String>) {
    let mut stream = UnixStream::connect(uds).expect("connect to the vsock socket");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // One write: a split CONNECT line closes the socket.
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return (stream, None),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (stream, None),
            Err(e) => panic!("reading the CONNECT reply: {e}"),
        }
    }
    (stream, Some(String::from_utf8_lossy(&line).into_owned()))
}

fn echo(stream: &mut UnixStream, message: &[u8]) {
    stream.write_all(message).expect("send to the guest");
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).expect("read the echo");
    assert!(back == message, "echo of {} bytes differs", message.len());
}

#[test]
fn disk_hash_and_vsock_echo() {
    let dir = TempDir::new("devices");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let disk = random_bytes(seed, DISK_BYTES);
    let disk_path = dir.path().join("disk.img");
    std::fs::write(&disk_path, &disk).unwrap();
    let expected = hex(&Sha256::digest(&disk[..HASHED_BYTES]));

    let mut config = dev_config(None);
    config.test_devices = true;
    let mut vm_settings = vm_config();
    vm_settings.config = Some(write_config(&dir, &config.to_string()));
    vm_settings.disk = Some(disk_path);
    vm_settings.vsock = true;
    vm_settings.vsock_dir = Some(dir.path().join("vsock"));

    let mut vm = RunningVm::launch(&vm_settings, SerialSink::Discard).expect("launch QEMU");
    let dump = |vm: &RunningVm| {
        vm.serial_lines()
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect::<String>()
    };
    let listening = vm.wait_for_line("self-check: vsock listening on port", LISTEN_TIMEOUT);
    assert!(listening.is_some(), "no listening line:\n{}", dump(&vm));
    let serial = dump(&vm);
    assert!(
        serial.contains(&format!(
            "disk sha256 of first {HASHED_BYTES} bytes = {expected}"
        )),
        "disk hash (seed {seed}) not printed as {expected}:\n{serial}"
    );
    assert!(
        serial.contains("virtio-blk 00:")
            && serial.contains(&format!("({} sectors)", DISK_BYTES / 512)),
        "capacity not reported:\n{serial}"
    );
    assert!(
        serial.contains("read past the end refused"),
        "out-of-range read not refused:\n{serial}"
    );

    let uds = vm.uds_path().expect("vsock attached").to_path_buf();
    let (_, refused) = connect(&uds, ECHO_PORT + 1);
    assert_eq!(refused, None, "a port nobody listens on must refuse");

    let (mut stream, reply) = connect(&uds, ECHO_PORT);
    assert_eq!(reply.as_deref(), Some("OK 5000"));
    echo(&mut stream, b"hello, ward\n");
    echo(&mut stream, b"x");
    // Larger than one packet and than one receive buffer (16 KiB): several packets each way.
    let large = random_bytes(seed ^ 0x5a5a, 40_000);
    echo(&mut stream, &large);
    drop(stream);

    let report = vm.wait(Some(Duration::from_secs(60)), &AtomicBool::new(false));
    let text = report.serial_text();
    eprintln!("---- serial ----\n{text}---- {}", report.outcome);
    assert!(
        text.contains(&format!("vsock echoed {} bytes", 12 + 1 + large.len())),
        "echo total not reported"
    );
    assert!(text.contains("device self-check passed"));
    assert!(report.outcome.is_success(), "{}", report.outcome);
}
