//! What `ward chat`, `ward release-key` and `ward demo` share: opening an attested session to an
//! enclave with the relying party's policy, and saying clearly why it failed.

use super::CommandError;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ward_attestation::protocol::{ClientParams, EvidenceVerifier, Purpose, SessionInfo};
use ward_attestation::verify::{HardwareVerifier, Policy};
use ward_tools::client::{Address, ClientError, Connection, Stream, connect, os_rng};

/// How long connecting and each read may take before the enclave counts as unresponsive.
pub const IO_TIMEOUT: Duration = Duration::from_secs(600);
/// How long setting up the connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The relying party's flags, shared by `ward chat` and `ward release-key`.
#[derive(clap::Args)]
pub struct TrustArgs {
    /// Accept simulated evidence (native platform, development only).
    #[arg(long)]
    allow_simulated: bool,
    /// Evidence policy (docs/policy.md); its `measurements` also apply to simulated evidence.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Expect exactly this deployment configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// SEV-SNP: the VCEK/VLEK certificate (DER or PEM) of the enclave's chip, from AMD's KDS
    /// or the host's certificate table; an SNP report is refused without it.
    #[arg(long)]
    vcek: Option<PathBuf>,
    /// SEV-SNP: the ASK/ARK chain (PEM); default: the built-in AMD certificates.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// TDX: Intel collateral (TCB info, QE identity, CRLs) as JSON (docs/policy.md); without it
    /// the TCB status is "Unknown" and the default policy refuses the quote.
    #[arg(long)]
    collateral: Option<PathBuf>,
}

impl TrustArgs {
    /// Reads the files the flags name.
    pub fn checks(&self) -> Result<Checks, CommandError> {
        let mut checks = Checks::load(
            self.allow_simulated,
            self.policy.as_deref(),
            self.config.as_deref(),
        )?;
        checks.snp_vek = read_optional(self.vcek.as_deref(), "the VCEK")?;
        checks.snp_chain = read_optional(self.chain.as_deref(), "the certificate chain")?;
        checks.tdx_collateral = read_optional(self.collateral.as_deref(), "the TDX collateral")?;
        Ok(checks)
    }
}

fn read_optional(path: Option<&Path>, what: &str) -> Result<Option<Vec<u8>>, CommandError> {
    path.map(|path| {
        std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()).into())
    })
    .transpose()
}

/// The relying party's side of the checks.
pub struct Checks {
    /// Accept simulated (native platform) evidence.
    pub allow_simulated: bool,
    /// The policy file (docs/policy.md); defaults apply without one.
    pub policy: Policy,
    /// The exact deployment configuration expected, if pinned.
    pub expected_config: Option<Vec<u8>>,
    /// SEV-SNP: the chip's VCEK/VLEK certificate.
    pub snp_vek: Option<Vec<u8>>,
    /// SEV-SNP: ASK/ARK chain; `None` uses the built-in certificates.
    pub snp_chain: Option<Vec<u8>>,
    /// TDX: Intel collateral JSON.
    pub tdx_collateral: Option<Vec<u8>>,
}

impl Checks {
    /// Reads `--policy` and `--config` files.
    pub fn load(
        allow_simulated: bool,
        policy: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<Self, CommandError> {
        let policy = match policy {
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("reading the policy {}: {e}", path.display()))?;
                Policy::from_json(&text).map_err(|e| format!("policy {}: {e}", path.display()))?
            }
            None => Policy::default(),
        };
        let expected_config = config
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| format!("reading the configuration {}: {e}", path.display()))
            })
            .transpose()?;
        Ok(Self {
            allow_simulated,
            policy,
            expected_config,
            snp_vek: None,
            snp_chain: None,
            tdx_collateral: None,
        })
    }

    /// Measurements a simulated report may carry: the policy's `measurements` entries that are
    /// 48 bytes (SHA-384 of the image, as the loader logs it); empty allows any.
    fn simulated_measurements(&self) -> Result<Vec<[u8; 48]>, CommandError> {
        let mut out = Vec::new();
        for text in &self.policy.measurements {
            let bytes = hex::decode(text).map_err(|e| format!("policy measurement {text}: {e}"))?;
            if let Ok(digest) = <[u8; 48]>::try_from(bytes.as_slice()) {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// The verifier for hardware evidence.
    pub fn verifier(&self) -> HardwareVerifier {
        HardwareVerifier {
            policy: self.policy.clone(),
            snp_vek: self.snp_vek.clone(),
            snp_chain: self.snp_chain.clone(),
            tdx_collateral: self.tdx_collateral.clone(),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Connects and runs the handshake; errors say what failed (nothing listening, evidence
/// rejected and which check, ...).
pub fn open<'v>(
    address: &Address,
    purpose: Purpose,
    checks: &Checks,
    verifier: &'v dyn EvidenceVerifier,
    capture: bool,
) -> Result<(Connection<'v, Stream>, SessionInfo), CommandError> {
    let stream = connect(address, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {address}: nothing listening there ({e})"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let params = ClientParams {
        purpose,
        allow_simulated: checks.allow_simulated,
        simulated_measurements: checks.simulated_measurements()?,
        expected_config: checks.expected_config.clone(),
    };
    let mut rng = os_rng()?;
    Connection::handshake(stream, params, verifier, &mut rng, capture)
        .map_err(|e| describe(&e, checks.allow_simulated).into())
}

/// A user-facing description of a client error.
pub fn describe(error: &ClientError, allow_simulated: bool) -> String {
    use ward_attestation::protocol::{EvidenceRejected, ProtocolError};
    match error {
        ClientError::Protocol(ProtocolError::Evidence(EvidenceRejected::SimulatedNotAllowed))
            if !allow_simulated =>
        {
            "evidence rejected: the enclave sent SIMULATED evidence (native platform, no hardware attestation); pass --allow-simulated to accept it for development".into()
        }
        ClientError::Protocol(ProtocolError::Evidence(why)) => {
            format!("evidence rejected: {why}")
        }
        ClientError::Protocol(
            e @ (ProtocolError::RecordAuthentication { .. }
            | ProtocolError::Truncated
            | ProtocolError::AnswerMismatch
            | ProtocolError::RecordSize { .. }),
        ) => format!(
            "session broken: {e} (records were replayed, reordered, dropped, altered or cut off on the way)"
        ),
        other => other.to_string(),
    }
}
