//! `ward release-key --connect ADDR --key model.key --sender-key release.key [--policy P]
//! [--config C] [--allow-simulated] [--vcek DER] [--chain PEM] [--collateral JSON]`: the model
//! owner's key release (DESIGN §12,
//! docs/protocol.md §5). Opens a key-release session, verifies the enclave's evidence against
//! the policy, checks that the bound deployment configuration names this key-release server
//! (the public half of `--sender-key`), then seals the model key to the enclave's attested
//! one-time key with HPKE and waits until the enclave reports the verified model — or why it
//! did not load.

use super::CommandError;
use super::attested::{Checks, TrustArgs, describe, open};
use super::keygen::read_key_file;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use ward_attestation::config::Config;
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{ModelInfo, Purpose};
use ward_attestation::sealed::{MODEL_KEY_LEN, ModelKey};
use ward_tools::client::{Address, os_rng};

#[derive(clap::Args)]
pub struct Args {
    /// The enclave: vsock://CID:PORT or unix://PATH:PORT (hybrid vsock).
    #[arg(long)]
    connect: Address,
    /// The model key written by `ward seal --key-out`.
    #[arg(long)]
    key: PathBuf,
    /// The key-release server's private key (`ward keygen`).
    #[arg(long)]
    sender_key: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Reads a model key file.
pub fn read_model_key(path: &Path) -> Result<ModelKey, CommandError> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let key = <[u8; MODEL_KEY_LEN]>::try_from(bytes.as_slice())
        .map(ModelKey::from_bytes)
        .map_err(|_| format!("{} is not a {MODEL_KEY_LEN}-byte model key", path.display()));
    bytes.fill(0);
    Ok(key?)
}

/// Releases `key` to the enclave at `address`; returns the model it loaded and how long the
/// release took (handshake to result, model decryption included).
pub fn release(
    address: &Address,
    checks: &Checks,
    sender: &ReleaseKeyPair,
    key: &ModelKey,
) -> Result<(ModelInfo, Duration), CommandError> {
    let start = Instant::now();
    let verifier = checks.verifier();
    let (mut connection, info) = open(address, Purpose::KeyRelease, checks, &verifier, false)?;
    let config = Config::parse(&info.config)
        .map_err(|e| format!("the enclave's deployment configuration does not parse: {e}"))?;
    if config.key_release_public_key != sender.public_bytes() {
        return Err(format!(
            "refusing to release: the enclave's bound configuration names key-release server {}, not this one ({})",
            hex::encode(config.key_release_public_key),
            hex::encode(sender.public_bytes())
        )
        .into());
    }
    let mut rng = os_rng()?;
    let model = connection
        .release_key(&mut rng, sender, key)
        .map_err(|e| describe(&e, checks.allow_simulated))?;
    let _ = connection.close();
    Ok((model, start.elapsed()))
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let checks = args.trust.checks()?;
    let sender = read_key_file(&args.sender_key)?;
    let key = read_model_key(&args.key)?;
    let (model, took) = release(&args.connect, &checks, &sender, &key)?;
    println!(
        "key released: the enclave loaded model {} version {} (sha384 {}) in {:.2} s",
        model.id,
        model.version,
        hex::encode(model.sha384),
        took.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
