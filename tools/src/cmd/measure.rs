//! `ward measure`: the launch measurements a correctly launched image must show, computed
//! offline so users and auditors can build their allowlists (docs/policy.md).
//!
//! - `ward measure snp --image IMG --vcpus N --vcpu-type T [--guest-features F]`: the SEV-SNP
//!   `MEASUREMENT` (QEMU, `-bios IMG`), identical to `sev-snp-measure --mode snp --ovmf IMG`.
//! - `ward measure tdx --image IMG`: the TDX `MRTD` from the image's TDVF metadata.
//! - `ward measure config --config FILE`: `HOST_DATA` (SHA-256) and `MRCONFIGID` (SHA-384) of a
//!   deployment configuration file, after checking that it parses.
//!
//! Digests are lowercase hex; the SNP and TDX values are printed alone on the last line.

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_attestation::config::Config;
use ward_attestation::evidence::encoding::to_hex;
use ward_attestation::measure::{config, snp, tdx};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// SEV-SNP launch digest (MEASUREMENT) of an image booted by QEMU with -bios.
    Snp {
        /// The firmware image (OVMF format: GUID table with SEV metadata at its end).
        #[arg(long)]
        image: PathBuf,
        /// Number of vCPUs (one VMSA page each).
        #[arg(long)]
        vcpus: u32,
        /// QEMU vCPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa.
        #[arg(long)]
        vcpu_type: String,
        /// SEV_FEATURES of the VMSAs (hex with 0x, or decimal).
        #[arg(long, default_value = "0x1", value_parser = parse_u64)]
        guest_features: u64,
    },
    /// TDX MRTD of an image booted by QEMU as a TD.
    Tdx {
        /// The firmware image (OVMF format: GUID table with TDVF metadata at its end).
        #[arg(long)]
        image: PathBuf,
    },
    /// HOST_DATA (SHA-256) and MRCONFIGID (SHA-384) of a deployment configuration file.
    Config {
        #[arg(long)]
        config: PathBuf,
    },
}

fn parse_u64(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a number: {e}"))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()).into())
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    match args.what {
        What::Snp {
            image,
            vcpus,
            vcpu_type,
            guest_features,
        } => {
            let vcpu_signature = snp::vcpu_type_signature(&vcpu_type).map_err(|_| {
                let known: Vec<_> = snp::VCPU_TYPES.iter().map(|(name, _)| *name).collect();
                format!(
                    "unknown vCPU type {vcpu_type:?} (known: {})",
                    known.join(", ")
                )
            })?;
            let launch = snp::SnpLaunch {
                vcpus,
                vcpu_signature,
                guest_features,
            };
            let digest = snp::launch_digest(&read(&image)?, &launch)
                .map_err(|e| format!("{}: {e}", image.display()))?;
            println!("{}", to_hex(&digest));
        }
        What::Tdx { image } => {
            let mrtd =
                tdx::mrtd(&read(&image)?).map_err(|e| format!("{}: {e}", image.display()))?;
            println!("{}", to_hex(&mrtd));
        }
        What::Config { config: path } => {
            let bytes = read(&path)?;
            Config::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("host_data={}", to_hex(&config::host_data(&bytes)));
            println!("mr_config_id={}", to_hex(&config::mr_config_id(&bytes)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
