//! Harness for the end-to-end tests that serve from a booted enclave (`e2e.rs`, `e2e_smp.rs`,
//! `bench_boot.rs`): the model owner's files (a sealed GGUF, its key, the key-release key pair,
//! a deployment configuration), the booted enclave with its hybrid-vsock address, client
//! sessions, and the host's greedy answer from `ward generate` to compare with.
//!
//! The `ward` binary is `target/release/ward` (built by the same `cargo run --release -p
//! ward-tools -- build` that builds the image) or `$WARD_BIN`.

use crate::{TempDir, accel, built_file, image, workspace_root};
use rand_chacha::rand_core::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use ward_attestation::config::Config;
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{ClientParams, NoHardwareVerifier, Purpose, Request};
use ward_attestation::sealed::{ModelKey, seal_image};
use ward_tools::client::{Address, Connection, SERVICE_PORT, connect, os_rng};
use ward_tools::qemu::{RunningVm, SerialSink, VmConfig};
use ward_tools::tiny_model::{TinyModelSpec, tiny_model_gguf};

/// What the service logs once it listens.
pub const LISTENING: &str = "service: listening on vsock port";
/// Longest wait for the service to listen.
pub const SERVICE_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for any answer from the enclave (TCG runs the engine slowly).
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// The tiny model's sealed version.
pub const TINY_VERSION: u64 = 3;

/// The `ward` binary: `$WARD_BIN`, else `target/release/ward`.
pub fn ward_bin() -> PathBuf {
    built_file("WARD_BIN", "target/release/ward")
}

/// Runs `ward` with `args`, echoing what it printed.
pub fn ward(args: &[&str]) -> Output {
    let output = Command::new(ward_bin())
        .args(args)
        .output()
        .expect("run ward");
    eprintln!(
        "$ ward {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary path as the `&str` a command line takes.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// Model owner's files: the GGUF, its sealed disk, the model key, the key-release key pair.
pub struct Owner {
    pub dir: TempDir,
    pub gguf: PathBuf,
    pub disk: PathBuf,
    pub key_file: PathBuf,
    pub key: ModelKey,
    pub sender_file: PathBuf,
    pub sender: ReleaseKeyPair,
}

impl Owner {
    /// `ward release-key` as this owner, accepting the enclave's simulated evidence.
    pub fn release_key(&self, addr: &str) -> Output {
        ward(&[
            "release-key",
            "--connect",
            addr,
            "--key",
            path_str(&self.key_file),
            "--sender-key",
            path_str(&self.sender_file),
            "--allow-simulated",
        ])
    }

    /// The tiny generated model of `spec`, sealed as `ward-tiny` version [`TINY_VERSION`].
    pub fn tiny(tag: &str, spec: &TinyModelSpec) -> Self {
        Self::new(
            tag,
            "ward-tiny",
            tiny_model_gguf(spec),
            TINY_VERSION,
            |_| {},
        )
    }

    /// Seals `gguf` as model `id` version `version`, then lets `tamper` change the image.
    pub fn new(
        tag: &str,
        id: &str,
        gguf: Vec<u8>,
        version: u64,
        tamper: impl FnOnce(&mut Vec<u8>),
    ) -> Self {
        let dir = TempDir::new(tag);
        let gguf_path = dir.path().join("model.gguf");
        std::fs::write(&gguf_path, &gguf).unwrap();
        let mut key_bytes = [0u8; 32];
        os_rng().unwrap().fill_bytes(&mut key_bytes);
        let key = ModelKey::from_bytes(key_bytes);
        let mut image = seal_image(&key, id, version, 64 << 10, [5; 7], &gguf).unwrap();
        tamper(&mut image);
        let disk = dir.path().join("model.disk");
        std::fs::write(&disk, &image).unwrap();
        let key_file = dir.path().join("model.key");
        std::fs::write(&key_file, key_bytes).unwrap();
        let sender_file = dir.path().join("release.key");
        let keygen = ward(&["keygen", "--out", path_str(&sender_file)]);
        assert!(keygen.status.success());
        let secret: [u8; 32] = std::fs::read(&sender_file).unwrap().try_into().unwrap();
        let sender = ReleaseKeyPair::from_secret_bytes(&secret).unwrap();
        let printed = String::from_utf8_lossy(&keygen.stdout).into_owned();
        assert!(printed.contains(&hex(&sender.public_bytes())), "{printed}");
        Self {
            dir,
            gguf: gguf_path,
            disk,
            key_file,
            key,
            sender_file,
            sender,
        }
    }

    /// A deployment configuration naming this owner's key-release server.
    pub fn config(&self, min_version: u32, extra: impl FnOnce(&mut Config)) -> PathBuf {
        let mut config = Config::new(min_version, self.sender.public_bytes());
        extra(&mut config);
        let path = self.dir.path().join("ward.conf");
        std::fs::write(&path, config.to_string()).unwrap();
        path
    }
}

/// A booted enclave, listening; shut down (and its serial output echoed) when dropped.
pub struct Enclave {
    pub vm: RunningVm,
    pub address: Address,
    pub uds: PathBuf,
    _serialised: std::sync::MutexGuard<'static, ()>,
}

impl Enclave {
    /// Boots with `config` and the sealed `disk`, `memory_mib` of RAM and `cpus` CPUs, and waits
    /// until the service listens.
    pub fn boot(config: &Path, disk: &Path, memory_mib: u32, cpus: u32) -> Self {
        let serialised = crate::serialise_boots();
        let mut vm_config = VmConfig::new(image());
        vm_config.config = Some(config.to_path_buf());
        vm_config.disk = Some(disk.to_path_buf());
        vm_config.vsock = true;
        vm_config.memory_mib = memory_mib;
        vm_config.cpus = cpus;
        vm_config.accel = accel();
        let mut vm = RunningVm::launch(&vm_config, SerialSink::Discard).expect("launch QEMU");
        let listening = vm.wait_for_line(LISTENING, SERVICE_BOOT_TIMEOUT);
        let uds = vm.uds_path().expect("vsock").to_path_buf();
        let enclave = Self {
            vm,
            address: Address::HybridUnix {
                path: uds.clone(),
                port: SERVICE_PORT,
            },
            uds,
            _serialised: serialised,
        };
        assert!(listening.is_some(), "{}", enclave.serial());
        enclave
    }

    /// The address `ward` commands take.
    pub fn addr(&self) -> String {
        format!("unix://{}:{SERVICE_PORT}", self.uds.display())
    }

    /// The serial output so far.
    pub fn serial(&self) -> String {
        self.vm
            .serial_lines()
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect()
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        self.vm.shutdown();
        eprintln!("---- enclave serial ----\n{}", self.serial());
    }
}

/// A chat client that accepts the native platform's simulated evidence.
pub fn chat_params() -> ClientParams {
    ClientParams {
        purpose: Purpose::Chat,
        allow_simulated: true,
        simulated_measurements: Vec::new(),
        expected_config: None,
    }
}

/// Opens a chat session over `address` (possibly a relay), capturing what is read.
pub fn chat_session<'v>(
    address: &Address,
    verifier: &'v NoHardwareVerifier,
) -> Connection<'v, ward_tools::client::Stream> {
    let stream = connect(address, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut rng = os_rng().unwrap();
    Connection::handshake(stream, chat_params(), verifier, &mut rng, true)
        .expect("handshake")
        .0
}

/// A request for `user` with no system message, at most `max` new tokens.
pub fn request(user: &str, max: u32) -> Request {
    Request {
        max_new_tokens: max,
        system: String::new(),
        user: user.into(),
    }
}

/// `ward generate`'s greedy text for `message`.
pub fn host_greedy(gguf: &Path, message: &str, max: u32) -> String {
    let out = ward(&[
        "generate",
        "--model",
        path_str(gguf),
        "--chat",
        message,
        "--max-tokens",
        &max.to_string(),
        "--temperature",
        "0",
    ]);
    assert!(out.status.success());
    json_text(&out)
}

/// The `"text"` field of the JSON object a `ward` command printed.
pub fn json_text(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let start = stdout.find("\"text\":").expect("text field") + "\"text\":".len();
    json_string(&stdout[start..])
}

/// Decodes the JSON string literal at the start of `text`.
pub fn json_string(text: &str) -> String {
    let mut chars = text.trim_start().chars();
    assert_eq!(chars.next(), Some('"'));
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return out,
            '\\' => match chars.next().unwrap() {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let code: String = chars.by_ref().take(4).collect();
                    let mut value = u32::from_str_radix(&code, 16).unwrap();
                    if (0xd800..0xdc00).contains(&value) {
                        let low: String = chars.by_ref().skip(2).take(4).collect();
                        let low = u32::from_str_radix(&low, 16).unwrap();
                        value = 0x10000 + ((value - 0xd800) << 10) + (low - 0xdc00);
                    }
                    out.push(char::from_u32(value).unwrap());
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated JSON string");
}

/// The default model: `$WARD_MODEL`, else what `scripts/fetch-model.sh` prints.
pub fn ward_model() -> PathBuf {
    if let Some(path) = std::env::var_os("WARD_MODEL") {
        return PathBuf::from(path);
    }
    let output = Command::new("bash")
        .arg(workspace_root().join("scripts/fetch-model.sh"))
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(output.status.success(), "fetch-model.sh failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap().trim())
}
