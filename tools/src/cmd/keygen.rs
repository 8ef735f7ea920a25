//! `ward keygen --out FILE [--force]`: a new X25519 key pair for the key-release server
//! (DESIGN §12). The 32-byte private key goes to FILE (created with mode 0600, never
//! overwritten without `--force`, never printed); the public key is printed as the
//! `key_release_public_key = "..."` line of a deployment configuration (docs/config.md).

use super::CommandError;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ward_attestation::keyrelease::ReleaseKeyPair;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the private key (32 raw bytes, mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Creates a key pair, writes its secret to `path`, returns the public key.
pub fn generate_key_file(path: &Path, force: bool) -> Result<[u8; 32], CommandError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("OS random source: {e}"))?;
    let pair = ReleaseKeyPair::from_secret_bytes(&secret).map_err(|e| e.to_string())?;
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let written = options
        .open(path)
        .and_then(|mut file| file.write_all(&secret).and_then(|()| file.sync_all()));
    secret.fill(0);
    written.map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(pair.public_bytes())
}

/// Reads a key file written by [`generate_key_file`].
pub fn read_key_file(path: &Path) -> Result<ReleaseKeyPair, CommandError> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let result = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{} is not a 32-byte key file", path.display()).into())
        .and_then(|secret| {
            ReleaseKeyPair::from_secret_bytes(&secret)
                .map_err(|e| -> CommandError { format!("{}: {e}", path.display()).into() })
        });
    bytes.fill(0);
    result
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let public = generate_key_file(&args.out, args.force)?;
    eprintln!("private key written to {} (mode 0600)", args.out.display());
    println!("key_release_public_key = \"{}\"", hex::encode(public));
    Ok(ExitCode::SUCCESS)
}
