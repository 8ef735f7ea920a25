//! Small helpers over RustCrypto `x509-cert`: loading certificates, ECDSA P-256 certificate
//! signatures (Intel's PKI), validity periods and extension values.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use der::{Decode, Encode, oid::ObjectIdentifier};
use p256::ecdsa::signature::Verifier;
use x509_cert::Certificate;
use x509_cert::der;

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// One certificate from DER or PEM.
pub(crate) fn load_one(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let mut chain = load_pem_chain(bytes)?;
        match chain.len() {
            1 => Ok(chain.remove(0)),
            n => Err(alloc::format!("expected one certificate, found {n}")),
        }
    } else {
        Certificate::from_der(bytes).map_err(|e| alloc::format!("bad DER certificate: {e}"))
    }
}

pub(crate) fn load_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    Certificate::load_pem_chain(pem).map_err(|e| alloc::format!("bad PEM certificates: {e}"))
}

pub(crate) fn to_der(cert: &Certificate) -> Result<Vec<u8>, String> {
    cert.to_der().map_err(|e| e.to_string())
}

pub(crate) fn is_self_issued(cert: &Certificate) -> bool {
    cert.tbs_certificate().subject() == cert.tbs_certificate().issuer()
}

/// The subject's common name, for messages.
pub(crate) fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

/// The raw SEC1 public key of `cert`.
pub(crate) fn public_key(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
}

/// Checks that `issuer`'s P-256 key signed `cert` with ECDSA-SHA256.
pub(crate) fn verify_p256_signed_by(
    cert: &Certificate,
    issuer: &Certificate,
) -> Result<(), String> {
    if cert.signature_algorithm().oid != ECDSA_WITH_SHA256 {
        return Err(alloc::format!(
            "{} is not signed with ECDSA-SHA256",
            subject(cert)
        ));
    }
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(alloc::format!(
            "{} is not issued by {}",
            subject(cert),
            subject(issuer)
        ));
    }
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key(issuer))
        .map_err(|_| alloc::format!("{} has no P-256 key", subject(issuer)))?;
    let signature = p256::ecdsa::Signature::from_der(cert.signature().raw_bytes())
        .map_err(|_| alloc::format!("{} has a malformed signature", subject(cert)))?;
    let tbs = cert.tbs_certificate().to_der().map_err(|e| e.to_string())?;
    key.verify(&tbs, &signature).map_err(|_| {
        alloc::format!(
            "signature of {} by {} is invalid",
            subject(cert),
            subject(issuer)
        )
    })
}

/// Checks that `at` (seconds since the Unix epoch) lies in the certificate's validity period.
pub(crate) fn check_validity(cert: &Certificate, at: u64) -> Result<(), String> {
    let validity = cert.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if at < not_before {
        return Err(alloc::format!(
            "{} is not valid before {not_before}",
            subject(cert)
        ));
    }
    if at > not_after {
        return Err(alloc::format!("{} expired at {not_after}", subject(cert)));
    }
    Ok(())
}

/// The value (the contents of `extnValue`) of the extension `oid`, if present.
pub(crate) fn extension<'a>(cert: &'a Certificate, oid: &ObjectIdentifier) -> Option<&'a [u8]> {
    cert.tbs_certificate()
        .extensions()?
        .iter()
        .find(|ext| ext.extn_id == *oid)
        .map(|ext| ext.extn_value.as_bytes())
}
