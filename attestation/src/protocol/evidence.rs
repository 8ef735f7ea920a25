//! The evidence seam (docs/protocol.md §6): the server side produces evidence for a
//! REPORT_DATA, the client side verifies it. Simulated evidence is handled here; real SEV-SNP
//! and TDX evidence goes to an [`EvidenceVerifier`] supplied by the host (crate feature
//! `verify`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::error::kind_name;

/// Largest evidence accepted in a ServerHello.
pub const MAX_EVIDENCE_LEN: usize = 60_000;

/// Which kind of evidence a ServerHello carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Native platform: a clearly marked simulated report that proves nothing about hardware.
    Simulated = 1,
    /// An AMD SEV-SNP attestation report.
    SevSnp = 2,
    /// An Intel TDX DCAP quote.
    Tdx = 3,
}

impl EvidenceKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Simulated),
            2 => Some(Self::SevSnp),
            3 => Some(Self::Tdx),
            _ => None,
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(kind_name(*self))
    }
}

/// Evidence as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub bytes: Vec<u8>,
}

/// What the evidence must bind: this handshake and the deployment configuration the server sent.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Expected REPORT_DATA: the transcript hash.
    pub report_data: &'a [u8; 64],
    /// The exact deployment-configuration bytes from the ServerHello.
    pub config: &'a [u8],
}

/// The outcome of a successful verification, for display and policy decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvidence {
    pub kind: EvidenceKind,
    /// The launch measurement (SNP MEASUREMENT, TDX MRTD, simulated: the loader's SHA-384).
    pub measurement: Vec<u8>,
    /// Other checks the verifier wants to report, one line each.
    pub notes: Vec<String>,
}

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceRejected {
    /// Simulated evidence without the explicit allow flag.
    SimulatedNotAllowed,
    /// No verifier for this kind was configured.
    NoVerifier(EvidenceKind),
    /// The evidence bytes do not parse.
    Malformed(&'static str),
    /// The evidence signature does not verify.
    BadSignature,
    /// REPORT_DATA differs from the transcript hash: not made for this handshake.
    ReportDataMismatch,
    /// The evidence binds another deployment configuration.
    ConfigMismatch,
    /// The measurement is not in the allow-list.
    MeasurementNotAllowed,
    /// The server sent a configuration other than the one the client pinned.
    UnexpectedConfig,
    /// A kind-specific verifier refused it; its reason.
    Policy(String),
}

impl fmt::Display for EvidenceRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SimulatedNotAllowed => f.write_str(
                "the enclave sent SIMULATED evidence (no confidential hardware); \
                 refused without --allow-simulated",
            ),
            Self::NoVerifier(kind) => write!(f, "no verifier configured for {kind} evidence"),
            Self::Malformed(what) => write!(f, "malformed evidence: {what}"),
            Self::BadSignature => f.write_str("evidence signature does not verify"),
            Self::ReportDataMismatch => {
                f.write_str("REPORT_DATA does not match this handshake's transcript")
            }
            Self::ConfigMismatch => {
                f.write_str("evidence binds a different deployment configuration")
            }
            Self::MeasurementNotAllowed => f.write_str("measurement not in the allow-list"),
            Self::UnexpectedConfig => {
                f.write_str("deployment configuration differs from the expected one")
            }
            Self::Policy(why) => f.write_str(why),
        }
    }
}

/// Server side: produces evidence whose REPORT_DATA is the given value.
pub trait EvidenceProvider {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String>;
}

/// Client side: verifies hardware evidence (SEV-SNP, TDX) against a binding and a policy.
/// Simulated evidence never reaches it: the session handles that kind itself.
pub trait EvidenceVerifier {
    fn verify(
        &self,
        evidence: &Evidence,
        binding: &Binding<'_>,
    ) -> Result<VerifiedEvidence, EvidenceRejected>;
}

/// A verifier that accepts no hardware evidence: for clients that only talk to simulated
/// enclaves (and still refuse simulated evidence unless allowed).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHardwareVerifier;

impl EvidenceVerifier for NoHardwareVerifier {
    fn verify(
        &self,
        evidence: &Evidence,
        _binding: &Binding<'_>,
    ) -> Result<VerifiedEvidence, EvidenceRejected> {
        Err(EvidenceRejected::NoVerifier(evidence.kind))
    }
}
