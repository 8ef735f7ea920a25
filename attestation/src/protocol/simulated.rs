//! The simulated report (docs/protocol.md §6, kind 1): what the native platform offers in place
//! of hardware evidence. Signed by a per-boot Ed25519 key whose public half is in the report, so
//! it proves nothing about the machine; it is marked `SIMULATED` and refused unless allowed.

use super::evidence::{
    Binding, Evidence, EvidenceKind, EvidenceProvider, EvidenceRejected, VerifiedEvidence,
};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

/// The marker every simulated report starts with.
pub const SIMULATED_MAGIC: [u8; 16] = *b"SIMULATED-WARD-1";
/// Encoded length.
pub const SIMULATED_REPORT_LEN: usize = 272;
const SIGNED_LEN: usize = 208;

/// A decoded simulated report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedReport {
    pub measurement: [u8; 48],
    pub config_sha384: [u8; 48],
    pub report_data: [u8; 64],
    pub signing_key: [u8; 32],
    pub signature: [u8; 64],
}

impl SimulatedReport {
    pub fn parse(bytes: &[u8]) -> Result<Self, EvidenceRejected> {
        if bytes.len() != SIMULATED_REPORT_LEN {
            return Err(EvidenceRejected::Malformed("simulated report length"));
        }
        if bytes[..16] != SIMULATED_MAGIC {
            return Err(EvidenceRejected::Malformed("simulated report marker"));
        }
        let mut r = Self {
            measurement: [0; 48],
            config_sha384: [0; 48],
            report_data: [0; 64],
            signing_key: [0; 32],
            signature: [0; 64],
        };
        r.measurement.copy_from_slice(&bytes[16..64]);
        r.config_sha384.copy_from_slice(&bytes[64..112]);
        r.report_data.copy_from_slice(&bytes[112..176]);
        r.signing_key.copy_from_slice(&bytes[176..208]);
        r.signature.copy_from_slice(&bytes[208..272]);
        Ok(r)
    }

    fn signed_part(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[..16].copy_from_slice(&SIMULATED_MAGIC);
        b[16..64].copy_from_slice(&self.measurement);
        b[64..112].copy_from_slice(&self.config_sha384);
        b[112..176].copy_from_slice(&self.report_data);
        b[176..208].copy_from_slice(&self.signing_key);
        b
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIMULATED_REPORT_LEN];
        b[..SIGNED_LEN].copy_from_slice(&self.signed_part());
        b[SIGNED_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// Checks the signature with the key the report itself carries.
    pub fn verify_signature(&self) -> Result<(), EvidenceRejected> {
        let key = VerifyingKey::from_bytes(&self.signing_key)
            .map_err(|_| EvidenceRejected::Malformed("simulated signing key"))?;
        key.verify_strict(&self.signed_part(), &Signature::from_bytes(&self.signature))
            .map_err(|_| EvidenceRejected::BadSignature)
    }
}

/// The native platform's [`EvidenceProvider`]: one Ed25519 key per boot.
pub struct SimulatedAttester {
    signing_key: SigningKey,
    measurement: [u8; 48],
    config_sha384: [u8; 48],
}

impl SimulatedAttester {
    /// `measurement` is the loader's SHA-384 of the image; `config` the deployment
    /// configuration bytes as launched.
    pub fn new(rng: &mut impl rand_core::CryptoRng, measurement: [u8; 48], config: &[u8]) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let signing_key = SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        Self {
            signing_key,
            measurement,
            config_sha384: Sha384::digest(config).into(),
        }
    }

    /// A signed report for `report_data`.
    pub fn report(&self, report_data: &[u8; 64]) -> SimulatedReport {
        let mut report = SimulatedReport {
            measurement: self.measurement,
            config_sha384: self.config_sha384,
            report_data: *report_data,
            signing_key: self.signing_key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        report.signature = self.signing_key.sign(&report.signed_part()).to_bytes();
        report
    }
}

impl EvidenceProvider for SimulatedAttester {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String> {
        Ok(Evidence {
            kind: EvidenceKind::Simulated,
            bytes: self.report(report_data).encode(),
        })
    }
}

/// Verifies simulated evidence: signature, REPORT_DATA, configuration digest, and the
/// measurement against `allowed_measurements` when that list is not empty.
pub fn verify_simulated(
    bytes: &[u8],
    binding: &Binding<'_>,
    allowed_measurements: &[[u8; 48]],
) -> Result<VerifiedEvidence, EvidenceRejected> {
    let report = SimulatedReport::parse(bytes)?;
    report.verify_signature()?;
    if !bool::from(report.report_data.ct_eq(binding.report_data)) {
        return Err(EvidenceRejected::ReportDataMismatch);
    }
    let config_digest: [u8; 48] = Sha384::digest(binding.config).into();
    if report.config_sha384 != config_digest {
        return Err(EvidenceRejected::ConfigMismatch);
    }
    if !allowed_measurements.is_empty() && !allowed_measurements.contains(&report.measurement) {
        return Err(EvidenceRejected::MeasurementNotAllowed);
    }
    Ok(VerifiedEvidence {
        kind: EvidenceKind::Simulated,
        measurement: report.measurement.to_vec(),
        notes: vec![String::from(
            "SIMULATED evidence: signed by a per-boot key, proves nothing about the hardware",
        )],
    })
}
