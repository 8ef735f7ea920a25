//! TDX DCAP quote verification.
//!
//! Trust runs Intel SGX Root CA (pinned) → PCK platform/processor CA → PCK certificate → QE
//! report (ECDSA P-256) → attestation key (bound by the QE report's REPORT_DATA, which must be
//! SHA-256(attestation key ‖ QE authentication data) followed by zeros) → quote. Those checks
//! need nothing but the quote and are done here with RustCrypto. The TCB status needs Intel's
//! collateral (TCB info, QE identity, CRLs), evaluated at an explicit time; that evaluation is
//! `dcap-qvl`'s. Without collateral the status is "Unknown".

use super::policy::{Policy, hex_eq};
use super::{hex, roots, x509};
use crate::evidence::encoding::decode_evidence;
use crate::evidence::tdx::TdxQuote;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use p256::ecdsa::signature::Verifier;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The quote (raw or hex text), Intel collateral as JSON (the `dcap-qvl` `QuoteCollateralV3` form, as PCCS
/// clients save it), and the time (seconds since the Unix epoch) to evaluate certificates and
/// collateral at.
pub struct TdxEvidence<'a> {
    pub quote: &'a [u8],
    pub collateral: Option<&'a [u8]>,
    pub at: u64,
}

/// The TCB status when no collateral was given.
pub const STATUS_UNKNOWN: &str = "Unknown";
/// The TCB status when no TCB level of the collateral matches the platform.
pub const STATUS_NO_MATCH: &str = "NoMatch";

#[derive(Debug, Clone, Serialize)]
pub struct TdxVerdict {
    pub platform: &'static str,
    pub version: Option<u16>,
    pub body_type: Option<u16>,
    pub tee_type: Option<String>,
    /// Quote, QE report and their binding all verify (the three fields below).
    pub signature_valid: bool,
    pub quote_signature_valid: bool,
    pub qe_report_signature_valid: bool,
    pub qe_report_binds_attestation_key: bool,
    /// The PCK chain leads to the pinned Intel root and is valid at `evaluated_at`.
    pub chain_valid: bool,
    pub fmspc: Option<String>,
    pub pce_svn: Option<u16>,
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
    pub evaluated_at: u64,
    pub mr_td: Option<String>,
    pub rtmr0: Option<String>,
    pub rtmr1: Option<String>,
    pub rtmr2: Option<String>,
    pub rtmr3: Option<String>,
    pub mr_seam: Option<String>,
    pub mr_signer_seam: Option<String>,
    pub mr_config_id: Option<String>,
    pub mr_owner: Option<String>,
    pub mr_owner_config: Option<String>,
    pub td_attributes: Option<String>,
    pub xfam: Option<String>,
    pub tee_tcb_svn: Option<String>,
    /// TD 1.5 reports only (quote v5 body type 3).
    pub tee_tcb_svn2: Option<String>,
    pub mr_service_td: Option<String>,
    pub report_data: Option<String>,
    pub debug: Option<bool>,
    pub accepted: bool,
    pub reasons: Vec<String>,
}

impl TdxVerdict {
    fn empty(at: u64) -> Self {
        Self {
            platform: "tdx",
            version: None,
            body_type: None,
            tee_type: None,
            signature_valid: false,
            quote_signature_valid: false,
            qe_report_signature_valid: false,
            qe_report_binds_attestation_key: false,
            chain_valid: false,
            fmspc: None,
            pce_svn: None,
            tcb_status: STATUS_UNKNOWN.to_string(),
            advisory_ids: Vec::new(),
            evaluated_at: at,
            mr_td: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mr_seam: None,
            mr_signer_seam: None,
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            td_attributes: None,
            xfam: None,
            tee_tcb_svn: None,
            tee_tcb_svn2: None,
            mr_service_td: None,
            report_data: None,
            debug: None,
            accepted: false,
            reasons: Vec::new(),
        }
    }
}

/// Verifies a quote and applies `policy`.
pub fn verify(evidence: &TdxEvidence<'_>, policy: &Policy) -> TdxVerdict {
    let mut verdict = TdxVerdict::empty(evidence.at);
    let raw = match decode_evidence(evidence.quote) {
        Ok(raw) => raw,
        Err(e) => {
            verdict.reasons.push(format!("quote: {e}"));
            return verdict;
        }
    };
    let quote = match TdxQuote::parse(&raw) {
        Ok(quote) => quote,
        Err(e) => {
            verdict.reasons.push(format!("quote: {e}"));
            return verdict;
        }
    };
    let mut reasons = Vec::new();
    let sig = &quote.signature;

    let pck_leaf = match verify_pck_chain(&sig.pck_chain_pem, evidence.at) {
        Ok(leaf) => {
            verdict.chain_valid = true;
            Some(leaf)
        }
        Err(e) => {
            reasons.push(format!("PCK certificate chain: {e}"));
            x509::load_pem_chain(&sig.pck_chain_pem)
                .ok()
                .and_then(|mut c| (!c.is_empty()).then(|| c.remove(0)))
        }
    };
    if let Some(leaf) = &pck_leaf {
        match verify_p256(
            x509::public_key(leaf),
            &sig.qe_report.raw,
            &sig.qe_report_signature,
        ) {
            Ok(()) => verdict.qe_report_signature_valid = true,
            Err(e) => reasons.push(format!("QE report signature: {e}")),
        }
        if let Ok(der) = x509::to_der(leaf)
            && let Ok(ext) = dcap_qvl::intel::parse_pck_extension(&der)
        {
            verdict.fmspc = Some(hex(ext.fmspc));
            verdict.pce_svn = Some(ext.pce_svn);
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(sig.attestation_key);
    hasher.update(&sig.qe_auth_data);
    let expected: [u8; 32] = hasher.finalize().into();
    let report_data = &sig.qe_report.report_data;
    if report_data[..32] == expected && report_data[32..].iter().all(|b| *b == 0) {
        verdict.qe_report_binds_attestation_key = true;
    } else {
        reasons.push("QE report does not bind the attestation key".to_string());
    }
    let mut attestation_key = [0u8; 65];
    attestation_key[0] = 0x04; // uncompressed SEC1 point
    attestation_key[1..].copy_from_slice(&sig.attestation_key);
    match verify_p256(
        &attestation_key,
        &raw[..quote.signed_len],
        &sig.quote_signature,
    ) {
        Ok(()) => verdict.quote_signature_valid = true,
        Err(e) => reasons.push(format!("quote signature: {e}")),
    }
    verdict.signature_valid = verdict.quote_signature_valid
        && verdict.qe_report_signature_valid
        && verdict.qe_report_binds_attestation_key;

    match evidence.collateral {
        None => reasons.push("TCB status unknown: no collateral given (--collateral)".to_string()),
        Some(json) => match evaluate_tcb(&raw, json, evidence.at) {
            Ok((status, advisories)) => {
                verdict.tcb_status = status;
                verdict.advisory_ids = advisories;
            }
            Err(TcbError::NoMatch) => verdict.tcb_status = STATUS_NO_MATCH.to_string(),
            Err(TcbError::Revoked) => verdict.tcb_status = "Revoked".to_string(),
            Err(TcbError::Other(e)) => reasons.push(format!("collateral: {e}")),
        },
    }
    if !policy.tdx_tcb_statuses.contains(&verdict.tcb_status)
        && verdict.tcb_status != STATUS_UNKNOWN
    {
        reasons.push(format!("TCB status {} is not accepted", verdict.tcb_status));
    }

    apply_policy(&quote, policy, &mut reasons);

    let body = &quote.body;
    verdict.version = Some(quote.version);
    verdict.body_type = quote.body_type;
    verdict.tee_type = Some(format!("{:#x}", quote.tee_type));
    verdict.mr_td = Some(hex(body.mr_td));
    verdict.rtmr0 = Some(hex(body.rtmr[0]));
    verdict.rtmr1 = Some(hex(body.rtmr[1]));
    verdict.rtmr2 = Some(hex(body.rtmr[2]));
    verdict.rtmr3 = Some(hex(body.rtmr[3]));
    verdict.mr_seam = Some(hex(body.mr_seam));
    verdict.mr_signer_seam = Some(hex(body.mr_signer_seam));
    verdict.mr_config_id = Some(hex(body.mr_config_id));
    verdict.mr_owner = Some(hex(body.mr_owner));
    verdict.mr_owner_config = Some(hex(body.mr_owner_config));
    verdict.td_attributes = Some(hex(body.td_attributes.0));
    verdict.xfam = Some(hex(body.xfam));
    verdict.tee_tcb_svn = Some(hex(body.tee_tcb_svn));
    verdict.tee_tcb_svn2 = body.tee_tcb_svn2.map(hex);
    verdict.mr_service_td = body.mr_service_td.map(hex);
    verdict.report_data = Some(hex(body.report_data));
    verdict.debug = Some(body.td_attributes.debug());
    verdict.accepted = reasons.is_empty();
    verdict.reasons = reasons;
    verdict
}

fn apply_policy(quote: &TdxQuote, policy: &Policy, reasons: &mut Vec<String>) {
    let body = &quote.body;
    if body.td_attributes.debug() && !policy.allow_debug {
        reasons.push("debug TD: TD attributes allow the host to debug it".to_string());
    }
    if !policy.mr_td.is_empty() && !policy.mr_td.iter().any(|m| hex_eq(m, &body.mr_td)) {
        reasons.push(format!("MRTD {} is not in the allowlist", hex(body.mr_td)));
    }
    for (index, expected) in policy.rtmr.iter().enumerate() {
        if let Some(expected) = expected
            && !hex_eq(expected, &body.rtmr[index])
        {
            reasons.push(format!("RTMR{index} is not the expected value"));
        }
    }
    if let Some(expected) = &policy.mr_config_id
        && !hex_eq(expected, &body.mr_config_id)
    {
        reasons.push(format!(
            "MRCONFIGID {} is not the expected {expected}",
            hex(body.mr_config_id)
        ));
    }
    if let Some(expected) = &policy.xfam
        && !hex_eq(expected, &body.xfam)
    {
        reasons.push(format!(
            "XFAM {} is not the expected {expected}",
            hex(body.xfam)
        ));
    }
    if let Some(expected) = &policy.report_data
        && !hex_eq(expected, &body.report_data)
    {
        reasons.push("REPORT_DATA is not the expected value".to_string());
    }
}

/// ECDSA P-256 / SHA-256 with a raw `r ‖ s` signature and a SEC1 public key.
fn verify_p256(key: &[u8], message: &[u8], signature: &[u8; 64]) -> Result<(), String> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
        .map_err(|_| "not a P-256 public key".to_string())?;
    let signature = p256::ecdsa::Signature::from_slice(signature)
        .map_err(|_| "malformed signature".to_string())?;
    key.verify(message, &signature)
        .map_err(|_| "invalid signature".to_string())
}

/// Checks leaf ← CA ← pinned root, all valid at `at`, and returns the leaf.
fn verify_pck_chain(pem: &[u8], at: u64) -> Result<x509_cert::Certificate, String> {
    let certs = x509::load_pem_chain(pem)?;
    let count = certs.len();
    let [leaf, ca, root]: [x509_cert::Certificate; 3] = certs
        .try_into()
        .map_err(|_| format!("expected 3 certificates, found {count}"))?;
    if x509::to_der(&root)? != roots::INTEL_SGX_ROOT_CA {
        return Err(format!(
            "root {} is not the pinned Intel SGX Root CA",
            x509::subject(&root)
        ));
    }
    x509::verify_p256_signed_by(&root, &root)?;
    x509::verify_p256_signed_by(&ca, &root)?;
    x509::verify_p256_signed_by(&leaf, &ca)?;
    for cert in [&root, &ca, &leaf] {
        x509::check_validity(cert, at)?;
    }
    Ok(leaf)
}

enum TcbError {
    NoMatch,
    Revoked,
    Other(String),
}

/// TCB status and advisories from Intel collateral, by `dcap-qvl`, at `at`. Debug TDs are let
/// through here: the policy refuses them with its own reason.
fn evaluate_tcb(
    quote: &[u8],
    collateral: &[u8],
    at: u64,
) -> Result<(String, Vec<String>), TcbError> {
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral)
        .map_err(|e| TcbError::Other(format!("not a collateral JSON object: {e}")))?;
    let verifier =
        dcap_qvl::verify::QuoteVerifier::new(roots::INTEL_SGX_ROOT_CA.to_vec()).allow_debug(true);
    match verifier.verify(quote, &collateral, at) {
        Ok(report) => Ok((report.status, report.advisory_ids)),
        Err(e) => {
            let message = format!("{e:#}");
            // dcap-qvl reports these two TCB outcomes as errors; they are statuses, not failures
            // to evaluate.
            if message.contains("No matching TCB level found") {
                Err(TcbError::NoMatch)
            } else if message.contains("TCB status is invalid: Revoked") {
                Err(TcbError::Revoked)
            } else {
                Err(TcbError::Other(message))
            }
        }
    }
}
