//! `ward verify`: verify SEV-SNP reports and TDX quotes against pinned vendor roots and a policy
//! (docs/policy.md). The JSON output is a contract relied on outside the project:
//!
//! - `ward verify snp --report FILE [--vcek DER] [--chain PEM] [--policy P] --json`
//! - `ward verify tdx --quote FILE [--collateral JSON] [--at UNIX_SECONDS] [--policy P] --json`
//!
//! FILE is raw binary or hex text. With `--json` one JSON object is printed (at least
//! `signature_valid`, `chain_valid`, `measurement` or `mr_td`, `report_data`, `debug`,
//! `tcb_status` for TDX, `accepted` and `reasons`). The exit status is 0 iff the evidence is
//! accepted.

use super::CommandError;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use ward_attestation::verify::Policy;
use ward_attestation::verify::snp::{self, SnpEvidence};
use ward_attestation::verify::tdx::{self, TdxEvidence};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Verify an SEV-SNP attestation report.
    Snp {
        /// The report (1184 bytes, raw or hex text).
        #[arg(long)]
        report: PathBuf,
        /// The VCEK or VLEK certificate (DER or PEM).
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// ASK/ASVK and ARK (PEM); default: the built-in AMD certificates.
        #[arg(long)]
        chain: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Verify a TDX DCAP quote (version 4 or 5).
    Tdx {
        /// The quote (raw or hex text).
        #[arg(long)]
        quote: PathBuf,
        /// Intel collateral (TCB info, QE identity, CRLs) as dcap-qvl's JSON.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// Time to check certificates and collateral at (seconds since 1970); default: now.
        #[arg(long)]
        at: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Policy file (JSON, docs/policy.md); default: the built-in default policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print the verdict as one JSON object.
    #[arg(long)]
    json: bool,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()).into())
}

fn load_policy(path: &Option<PathBuf>) -> Result<Policy, CommandError> {
    match path {
        None => Ok(Policy::default()),
        Some(path) => {
            Ok(Policy::from_json(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?)
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    match args.what {
        What::Snp {
            report,
            vcek,
            chain,
            common,
        } => {
            let policy = load_policy(&common.policy)?;
            let report = read(&report)?;
            let vcek = vcek.as_ref().map(read).transpose()?;
            let chain = chain.as_ref().map(read).transpose()?;
            let evidence = SnpEvidence {
                report: &report,
                vek: vcek.as_deref(),
                chain: chain.as_deref(),
            };
            let verdict = snp::verify(&evidence, &policy);
            let summary = [
                ("measurement", verdict.measurement.clone()),
                ("report_data", verdict.report_data.clone()),
                ("host_data", verdict.host_data.clone()),
            ];
            emit(
                &verdict,
                common.json,
                verdict.accepted,
                &verdict.reasons,
                &summary,
            )
        }
        What::Tdx {
            quote,
            collateral,
            at,
            common,
        } => {
            let policy = load_policy(&common.policy)?;
            let quote = read(&quote)?;
            let collateral = collateral.as_ref().map(read).transpose()?;
            let at = match at {
                Some(at) => at,
                None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            };
            let evidence = TdxEvidence {
                quote: &quote,
                collateral: collateral.as_deref(),
                at,
            };
            let verdict = tdx::verify(&evidence, &policy);
            let summary = [
                ("mr_td", verdict.mr_td.clone()),
                ("report_data", verdict.report_data.clone()),
                ("tcb_status", Some(verdict.tcb_status.clone())),
            ];
            emit(
                &verdict,
                common.json,
                verdict.accepted,
                &verdict.reasons,
                &summary,
            )
        }
    }
}

fn emit<T: Serialize>(
    verdict: &T,
    json: bool,
    accepted: bool,
    reasons: &[String],
    summary: &[(&str, Option<String>)],
) -> Result<ExitCode, CommandError> {
    if json {
        println!("{}", serde_json::to_string(verdict)?);
    } else {
        println!("{}", if accepted { "accepted" } else { "REFUSED" });
        for (name, value) in summary {
            println!("  {name}: {}", value.as_deref().unwrap_or("-"));
        }
        for reason in reasons {
            println!("  reason: {reason}");
        }
    }
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
