//! `ward demo [MESSAGE]`: the main job on one machine, start to end.
//!
//! 1. The default model (SmolLM2-135M-Instruct Q4_1) from `$WARD_MODEL`, else
//!    `scripts/fetch-model.sh` (which downloads it into the cache when missing).
//! 2. A private working directory (mode 0700, removed at the end): the model sealed into a disk
//!    image with a fresh model key (`ward seal`), a fresh key-release key pair (`ward keygen`),
//!    and a deployment configuration naming that key-release server.
//! 3. The image (`target/ward/ward.img`, built with `ward build` when missing) booted under QEMU
//!    with the sealed disk and vsock (the `ward run` launcher).
//! 4. The key released to the attested enclave (`ward release-key`), pinning the image's
//!    measurement and the configuration; the enclave decrypts and verifies the model.
//! 5. One question asked (`ward chat`), the answer streamed as it arrives.
//! 6. Everything shut down — also on failure and on Ctrl-C — and the timings printed: boot,
//!    key release, model decrypt+verify (as the enclave logs it), first token, tokens/s.
//!
//! The evidence is the native platform's simulated report, accepted here explicitly.

use super::CommandError;
use super::attested::{Checks, describe, open};
use super::keygen::{generate_key_file, read_key_file};
use super::release_key::{read_model_key, release};
use clap::Parser;
use sha2::{Digest, Sha384};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ward_attestation::config::Config;
use ward_attestation::protocol::{Purpose, Request};
use ward_tools::client::Address;
use ward_tools::image::build::{self, BuildOptions};
use ward_tools::qemu::{Accel, RunningVm, SerialLine, SerialSink, VmConfig};

/// Asked when no message is given.
pub const DEFAULT_QUESTION: &str = "What is the capital of France?";
/// The system message unless `--system` says otherwise.
pub const DEFAULT_SYSTEM: &str = "Answer in one short sentence.";
/// The serial line the service prints once it listens.
pub const LISTENING_LINE: &str = "service: listening on vsock port";
/// The serial line the service prints once the model verified.
pub const VERIFIED_LINE: &str = "model verified:";
/// Guest RAM: the model's plaintext and packed weights, the KV caches, the heap's slack.
const DEMO_MEMORY_MIB: u32 = 1024;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(clap::Args)]
pub struct Args {
    /// The question.
    #[arg(default_value = DEFAULT_QUESTION)]
    message: String,
    /// Most tokens in the answer (under TCG the enclave takes seconds per token).
    #[arg(long, default_value_t = 16)]
    max_tokens: u32,
    /// System message; a short one keeps the prompt, read token by token under TCG, short.
    /// Empty: the model's default system message.
    #[arg(long, default_value = DEFAULT_SYSTEM)]
    system: String,
    /// Accelerator; by default KVM only where kvm_amd/kvm_intel is loaded, else TCG.
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Keep the enclave's serial console in this file.
    #[arg(long)]
    serial: Option<PathBuf>,
}

/// `ward seal`'s arguments, parsed as its command line would be.
#[derive(Parser)]
struct SealCommand {
    #[command(flatten)]
    args: super::seal::Args,
}

/// Set by the Ctrl-C handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A private directory removed when dropped (it holds the model key and the release key).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self, CommandError> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("ward-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn step(text: &str) {
    eprintln!("ward demo: {text}");
}

fn model_path(workspace: &Path) -> Result<PathBuf, CommandError> {
    if let Some(path) = std::env::var_os("WARD_MODEL") {
        return Ok(PathBuf::from(path));
    }
    let script = workspace.join("scripts/fetch-model.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed", script.display()).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or("").trim();
    if line.is_empty() {
        return Err(format!("{} printed no path", script.display()).into());
    }
    Ok(PathBuf::from(line))
}

fn seal(model: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), CommandError> {
    let disk = dir.join("model.disk");
    let key = dir.join("model.key");
    let command = SealCommand::try_parse_from([
        "seal".as_ref(),
        "--gguf".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        disk.as_os_str(),
        "--key-out".as_ref(),
        key.as_os_str(),
        "--model-version".as_ref(),
        "1".as_ref(),
        "--model-id".as_ref(),
        "SmolLM2-135M-Instruct-Q4_1".as_ref(),
    ] as [&std::ffi::OsStr; 11])
    .map_err(|e| format!("seal arguments: {e}"))?;
    super::seal::run(command.args)?;
    Ok((disk, key))
}

fn image(workspace: &Path) -> Result<PathBuf, CommandError> {
    let path = workspace.join("target/ward/ward.img");
    if path.exists() {
        return Ok(path);
    }
    step("building the image (ward build)");
    let built = build::build_image(&BuildOptions::new(workspace.to_path_buf()))?;
    Ok(built.image_path)
}

/// Waits for a serial line of the VM in `slot`.
fn wait_for_line(
    slot: &Mutex<Option<RunningVm>>,
    needle: &str,
    timeout: Duration,
) -> Option<SerialLine> {
    let mut slot = slot.lock().ok()?;
    slot.as_mut()?.wait_for_line(needle, timeout)
}

/// The number before `unit` in a log line (`... in 123 ms ...`).
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let end = line.find(unit)?;
    line[..end].split_whitespace().last()?.parse().ok()
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let workspace = build::find_workspace(&std::env::current_dir()?)?;
    let vm_slot: Arc<Mutex<Option<RunningVm>>> = Arc::new(Mutex::new(None));
    let dir = WorkDir::new()?;
    {
        let vm_slot = Arc::clone(&vm_slot);
        let dir_path = dir.0.clone();
        ctrlc::set_handler(move || {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\nward demo: interrupted; stopping the enclave");
            if let Ok(mut slot) = vm_slot.lock()
                && let Some(mut vm) = slot.take()
            {
                vm.shutdown();
            }
            let _ = std::fs::remove_dir_all(&dir_path);
            std::process::exit(130);
        })?;
    }

    step("model");
    let model = model_path(&workspace)?;
    step(&format!("sealing {}", model.display()));
    let (disk, key_path) = seal(&model, &dir.0)?;
    let sender_path = dir.0.join("release.key");
    let public = generate_key_file(&sender_path, false)?;
    let mut config = Config::new(1, public);
    config.slots = 2;
    config.queue = 4;
    let config_text = config.to_string();
    let config_path = dir.0.join("ward.conf");
    std::fs::write(&config_path, &config_text)?;
    let image = image(&workspace)?;
    let measurement = Sha384::digest(std::fs::read(&image)?);

    let mut vm_config = VmConfig::new(&image);
    vm_config.config = Some(config_path.clone());
    vm_config.disk = Some(disk);
    vm_config.vsock = true;
    vm_config.memory_mib = DEMO_MEMORY_MIB;
    vm_config.accel = args.accel.unwrap_or(vm_config.accel);
    let sink = args
        .serial
        .clone()
        .map_or(SerialSink::Discard, SerialSink::File);
    step(&format!(
        "booting {} ({} MiB, {})",
        image.display(),
        vm_config.memory_mib,
        vm_config.accel.name()
    ));
    let result = (|| -> Result<(), CommandError> {
        let vm = RunningVm::launch(&vm_config, sink)?;
        let uds = vm
            .uds_path()
            .ok_or("the VM has no vsock socket")?
            .to_path_buf();
        *vm_slot.lock().map_err(|_| "lock")? = Some(vm);
        let listening = wait_for_line(&vm_slot, LISTENING_LINE, BOOT_TIMEOUT)
            .ok_or("the enclave did not start its service (see --serial)")?;
        let address = Address::HybridUnix {
            path: uds,
            port: ward_tools::client::SERVICE_PORT,
        };

        let mut checks = Checks::load(true, None, None)?;
        checks.policy.measurements = vec![hex::encode(measurement)];
        checks.expected_config = Some(config_text.clone().into_bytes());
        step("releasing the model key to the attested enclave");
        let sender = read_key_file(&sender_path)?;
        let key = read_model_key(&key_path)?;
        let (info, release_time) = release(&address, &checks, &sender, &key)?;
        let verified = wait_for_line(&vm_slot, VERIFIED_LINE, Duration::from_secs(5));
        let decrypt_ms = verified
            .as_ref()
            .and_then(|line| number_before(&line.text, "ms ("));
        step(&format!(
            "the enclave verified model {} version {} (sha384 {})",
            info.id,
            info.version,
            hex::encode(&info.sha384[..12])
        ));

        let verifier = checks.verifier();
        let (mut connection, _) = open(&address, Purpose::Chat, &checks, &verifier, false)?;
        let request = Request {
            max_new_tokens: args.max_tokens,
            system: args.system.clone(),
            user: args.message.clone(),
        };
        println!("> {}", args.message);
        let asked = Instant::now();
        let mut first: Option<Duration> = None;
        let mut stdout = std::io::stdout();
        let answer = connection
            .ask(&request, |piece| {
                first.get_or_insert_with(|| asked.elapsed());
                let _ = stdout.write_all(piece);
                let _ = stdout.flush();
            })
            .map_err(|e| describe(&e, true))?;
        let total = asked.elapsed();
        println!();
        let _ = connection.close();

        let tokens = answer.end.token_count;
        let first = first.unwrap_or(total);
        let rate = if tokens > 1 && total > first {
            f64::from(tokens - 1) / (total - first).as_secs_f64()
        } else {
            0.0
        };
        println!("---- timings ----");
        println!(
            "boot (QEMU start to service listening): {:.2} s",
            listening.at.as_secs_f64()
        );
        println!(
            "key release (handshake, evidence check, HPKE, model load): {:.2} s",
            release_time.as_secs_f64()
        );
        match decrypt_ms {
            Some(ms) => println!(
                "model decrypt+verify in the enclave: {:.2} s",
                ms as f64 / 1000.0
            ),
            None => println!("model decrypt+verify in the enclave: not reported"),
        }
        println!(
            "first token: {:.2} s after the request",
            first.as_secs_f64()
        );
        println!(
            "decode: {tokens} tokens, {rate:.2} tokens/s (answer streamed at the fixed {} ms cadence, {})",
            config.cadence_ms,
            vm_config.accel.name()
        );
        Ok(())
    })();
    if let Ok(mut slot) = vm_slot.lock()
        && let Some(mut vm) = slot.take()
    {
        vm.shutdown();
    }
    step("enclave stopped");
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The handler is cleaning up too; what broke was only the consequence.
        return Ok(ExitCode::from(130));
    }
    result?;
    Ok(ExitCode::SUCCESS)
}
