//! The protocol's hardware-evidence seam ([`EvidenceVerifier`], docs/protocol.md): a session
//! client hands the SNP report or TDX quote from the ServerHello to [`HardwareVerifier`], which
//! runs the same verification as `ward verify` with the relying party's policy, tightened to
//! this handshake: `REPORT_DATA` must be the transcript hash and `HOST_DATA` / `MRCONFIGID` the
//! digest of the configuration the server sent.

use super::policy::Policy;
use super::{hex, snp, tdx};
use crate::measure::config;
use crate::protocol::evidence::{
    Binding, Evidence, EvidenceKind, EvidenceRejected, EvidenceVerifier, VerifiedEvidence,
};
use alloc::string::String;
use alloc::vec::Vec;

/// Verifies SEV-SNP and TDX evidence for sessions.
#[derive(Debug, Clone)]
pub struct HardwareVerifier {
    /// The relying party's policy (measurement allowlists, minimum TCB, …).
    pub policy: Policy,
    /// SNP: the VCEK/VLEK certificate of the enclave's chip (DER or PEM), from the AMD KDS or
    /// the host's certificate table.
    pub snp_vek: Option<Vec<u8>>,
    /// SNP: ASK/ASVK and ARK (PEM); `None` uses the built-in certificates.
    pub snp_chain: Option<Vec<u8>>,
    /// TDX: Intel collateral JSON (see docs/policy.md).
    pub tdx_collateral: Option<Vec<u8>>,
    /// TDX: the time to evaluate certificates and collateral at (seconds since 1970).
    pub at: u64,
}

impl HardwareVerifier {
    fn bound_policy(&self, binding: &Binding<'_>, kind: EvidenceKind) -> Policy {
        let mut policy = self.policy.clone();
        policy.report_data = Some(hex(binding.report_data));
        match kind {
            EvidenceKind::Tdx => {
                policy.mr_config_id = Some(hex(config::mr_config_id(binding.config)))
            }
            _ => policy.host_data = Some(hex(config::host_data(binding.config))),
        }
        policy
    }
}

/// The checks the session maps to its own rejection reasons, from either verdict.
struct Outcome {
    signed: bool,
    report_data: Option<String>,
    config_digest: Option<String>,
    measurement: Option<String>,
    accepted: bool,
    reasons: Vec<String>,
    notes: Vec<String>,
}

impl HardwareVerifier {
    fn snp(&self, bytes: &[u8], policy: &Policy) -> Outcome {
        let evidence = snp::SnpEvidence {
            report: bytes,
            vek: self.snp_vek.as_deref(),
            chain: self.snp_chain.as_deref(),
        };
        let v = snp::verify(&evidence, policy);
        let notes = v
            .product
            .map(|p| {
                alloc::vec![alloc::format!(
                    "{p}, signed by its {}",
                    v.signing_key.unwrap_or("?")
                )]
            })
            .unwrap_or_default();
        Outcome {
            signed: v.signature_valid && v.chain_valid,
            report_data: v.report_data,
            config_digest: v.host_data,
            measurement: v.measurement,
            accepted: v.accepted,
            reasons: v.reasons,
            notes,
        }
    }

    fn tdx(&self, bytes: &[u8], policy: &Policy) -> Outcome {
        let evidence = tdx::TdxEvidence {
            quote: bytes,
            collateral: self.tdx_collateral.as_deref(),
            at: self.at,
        };
        let v = tdx::verify(&evidence, policy);
        Outcome {
            signed: v.signature_valid && v.chain_valid,
            report_data: v.report_data,
            config_digest: v.mr_config_id,
            measurement: v.mr_td,
            accepted: v.accepted,
            reasons: v.reasons,
            notes: alloc::vec![alloc::format!("TCB status {}", v.tcb_status)],
        }
    }
}

impl EvidenceVerifier for HardwareVerifier {
    fn verify(
        &self,
        evidence: &Evidence,
        binding: &Binding<'_>,
    ) -> Result<VerifiedEvidence, EvidenceRejected> {
        let policy = self.bound_policy(binding, evidence.kind);
        let (outcome, expected_config, allowlist) = match evidence.kind {
            EvidenceKind::SevSnp => (
                self.snp(&evidence.bytes, &policy),
                &policy.host_data,
                &self.policy.measurements,
            ),
            EvidenceKind::Tdx => (
                self.tdx(&evidence.bytes, &policy),
                &policy.mr_config_id,
                &self.policy.mr_td,
            ),
            EvidenceKind::Simulated => return Err(EvidenceRejected::SimulatedNotAllowed),
        };
        // The most specific reason first, so the user sees what to fix.
        let Some(measurement) = outcome.measurement else {
            return Err(EvidenceRejected::Policy(outcome.reasons.join("; ")));
        };
        if !outcome.signed {
            return Err(EvidenceRejected::BadSignature);
        }
        if outcome.report_data != policy.report_data {
            return Err(EvidenceRejected::ReportDataMismatch);
        }
        if outcome.config_digest != *expected_config {
            return Err(EvidenceRejected::ConfigMismatch);
        }
        if !allowlist.is_empty()
            && !allowlist
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&measurement))
        {
            return Err(EvidenceRejected::MeasurementNotAllowed);
        }
        if !outcome.accepted {
            return Err(EvidenceRejected::Policy(outcome.reasons.join("; ")));
        }
        let measurement = crate::evidence::encoding::decode_hex(measurement.as_bytes())
            .map_err(|_| EvidenceRejected::Malformed("measurement"))?;
        Ok(VerifiedEvidence {
            kind: evidence.kind,
            measurement,
            notes: outcome.notes,
        })
    }
}
