//! `ward chat --connect ADDR [--allow-simulated] [--policy P] [--config C] [--vcek DER] [--chain PEM]
//! [--collateral JSON] [--system S] [--json]
//! MESSAGE`: opens an attested session (the evidence is checked before anything is sent),
//! sends the prompt encrypted, and streams the decrypted answer to standard output as it
//! arrives. The answer counts only once its authenticated end checked out; a replayed,
//! reordered, dropped or cut-off record ends the session with an error instead.
//!
//! `--json` prints one object at the end instead:
//! `{"text":...,"tokens":N,"verified":{"evidence":KIND,"measurement":HEX,"config_sha384":HEX,
//! "model":{"id":...,"version":N,"sha384":HEX}|null,"build_id":HEX,"notes":[...]}}`.
//! `--capture FILE` writes every byte read from the socket (for on-wire checks).

use super::CommandError;
use super::attested::{TrustArgs, describe, open};
use sha2::{Digest, Sha384};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_attestation::protocol::{ModelStatus, Purpose, Request, SessionInfo};
use ward_tools::client::Address;

/// Tokens asked for when `--max-tokens` is not given.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

#[derive(clap::Args)]
pub struct Args {
    /// The enclave: vsock://CID:PORT or unix://PATH:PORT (hybrid vsock).
    #[arg(long)]
    connect: Address,
    #[command(flatten)]
    trust: TrustArgs,
    /// System message (default: the model's own, if its chat template has one).
    #[arg(long, default_value = "")]
    system: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    max_tokens: u32,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Write every byte read from the socket to this file.
    #[arg(long)]
    capture: Option<PathBuf>,
    /// The user message.
    message: String,
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The JSON `verified` object for a session.
pub fn verified_json(info: &SessionInfo) -> serde_json::Value {
    let model = match &info.model {
        ModelStatus::Loaded(m) => serde_json::json!({
            "id": m.id, "version": m.version, "sha384": hex(&m.sha384),
        }),
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "evidence": info.evidence.kind.to_string(),
        "measurement": hex(&info.evidence.measurement),
        "config_sha384": hex(&Sha384::digest(&info.config)),
        "build_id": hex(&info.build_id),
        "model": model,
        "notes": info.evidence.notes,
    })
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let checks = args.trust.checks()?;
    let verifier = checks.verifier();
    let (mut connection, info) = open(
        &args.connect,
        Purpose::Chat,
        &checks,
        &verifier,
        args.capture.is_some(),
    )?;
    let request = Request {
        max_new_tokens: args.max_tokens,
        system: args.system.clone(),
        user: args.message.clone(),
    };
    let stream_text = !args.json;
    let mut stdout = std::io::stdout();
    let result = connection.ask(&request, |piece| {
        if stream_text {
            let _ = stdout.write_all(piece);
            let _ = stdout.flush();
        }
    });
    if let Some(path) = &args.capture {
        std::fs::write(path, connection.captured().unwrap_or_default())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let answer = match result {
        Ok(answer) => answer,
        Err(error) => {
            if stream_text {
                println!();
            }
            return Err(describe(&error, checks.allow_simulated).into());
        }
    };
    // Closing is a courtesy; the answer is already complete and verified.
    let _ = connection.close();
    if args.json {
        let json = serde_json::json!({
            "text": String::from_utf8_lossy(&answer.text),
            "tokens": answer.end.token_count,
            "verified": verified_json(&info),
        });
        println!("{json}");
    } else {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
