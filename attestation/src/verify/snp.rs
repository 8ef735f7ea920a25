//! SEV-SNP report verification.
//!
//! Trust runs ARK (pinned, self-signed) → ASK or ASVK → VCEK or VLEK → report. The
//! certificate signatures are RSA-PSS with SHA-384 (checked by virtee `sev`), the report
//! signature ECDSA P-384 over the first 0x2A0 bytes with R and S stored little-endian. The
//! VCEK/VLEK also certifies a TCB version in X.509 extensions (AMD spec 57230); the report's
//! `REPORTED_TCB` must equal it, and a VCEK's hardware id must equal the report's `CHIP_ID`.

use super::policy::{Policy, hex_eq};
use super::{hex, roots, x509};
use crate::evidence::encoding::decode_evidence;
use crate::evidence::snp::{Product, SIGNED_LEN, SigningKey, SnpReport, TcbVersion};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use p384::ecdsa::signature::Verifier;
use serde::Serialize;
use sev::certs::snp::Verifiable;
use x509_cert::Certificate;
use x509_cert::der::{Decode, asn1::Ia5StringRef, oid::ObjectIdentifier};

/// What the caller hands over: the report (raw or hex text) and, when it has them, the VCEK/VLEK certificate
/// (DER or PEM) and a PEM chain (ASK or ASVK, and ARK). Without a chain the built-in
/// certificates are used.
pub struct SnpEvidence<'a> {
    pub report: &'a [u8],
    pub vek: Option<&'a [u8]>,
    pub chain: Option<&'a [u8]>,
}

/// SPLs as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TcbJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl From<TcbVersion> for TcbJson {
    fn from(t: TcbVersion) -> Self {
        Self {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

/// The outcome of every check, and the report's fields (hex strings are lowercase).
#[derive(Debug, Clone, Serialize)]
pub struct SnpVerdict {
    pub platform: &'static str,
    pub version: Option<u32>,
    pub product: Option<&'static str>,
    /// CPUID family, model and stepping (report version 3 and later).
    pub cpuid: Option<[u8; 3]>,
    pub signing_key: Option<&'static str>,
    /// The report is signed by the given VCEK/VLEK.
    pub signature_valid: bool,
    /// The VCEK/VLEK chains to a pinned AMD ARK.
    pub chain_valid: bool,
    /// The report's TCB (and chip id, for a VCEK) equal the certificate's.
    pub tcb_valid: bool,
    pub measurement: Option<String>,
    pub report_data: Option<String>,
    pub host_data: Option<String>,
    pub id_key_digest: Option<String>,
    pub author_key_digest: Option<String>,
    pub family_id: Option<String>,
    pub image_id: Option<String>,
    pub report_id: Option<String>,
    pub chip_id: Option<String>,
    pub vmpl: Option<u32>,
    pub guest_svn: Option<u32>,
    pub policy: Option<String>,
    pub debug: Option<bool>,
    pub platform_info: Option<String>,
    pub reported_tcb: Option<TcbJson>,
    pub vek_tcb: Option<TcbJson>,
    pub current_tcb: Option<TcbJson>,
    pub committed_tcb: Option<TcbJson>,
    pub launch_tcb: Option<TcbJson>,
    /// Current SNP firmware as "major.minor.build".
    pub firmware: Option<String>,
    pub accepted: bool,
    pub reasons: Vec<String>,
}

impl SnpVerdict {
    fn empty() -> Self {
        Self {
            platform: "sev-snp",
            version: None,
            product: None,
            cpuid: None,
            signing_key: None,
            signature_valid: false,
            chain_valid: false,
            tcb_valid: false,
            measurement: None,
            report_data: None,
            host_data: None,
            id_key_digest: None,
            author_key_digest: None,
            family_id: None,
            image_id: None,
            report_id: None,
            chip_id: None,
            vmpl: None,
            guest_svn: None,
            policy: None,
            debug: None,
            platform_info: None,
            reported_tcb: None,
            vek_tcb: None,
            current_tcb: None,
            committed_tcb: None,
            launch_tcb: None,
            firmware: None,
            accepted: false,
            reasons: Vec::new(),
        }
    }
}

/// X.509 extensions of AMD's VCEK/VLEK certificates (AMD spec 57230, "VCEK Certificate").
mod amd_oid {
    use x509_cert::der::oid::ObjectIdentifier;
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
}

/// Verifies a report and applies `policy`.
pub fn verify(evidence: &SnpEvidence<'_>, policy: &Policy) -> SnpVerdict {
    let mut verdict = SnpVerdict::empty();
    let raw = match decode_evidence(evidence.report) {
        Ok(raw) => raw,
        Err(e) => {
            verdict.reasons.push(format!("report: {e}"));
            return verdict;
        }
    };
    let report = match SnpReport::parse(&raw) {
        Ok(report) => report,
        Err(e) => {
            verdict.reasons.push(format!("report: {e}"));
            return verdict;
        }
    };
    let mut reasons = Vec::new();

    let vek = match evidence.vek.map(x509::load_one) {
        Some(Ok(cert)) => Some(cert),
        Some(Err(e)) => {
            reasons.push(format!("VCEK/VLEK certificate: {e}"));
            None
        }
        None => {
            reasons.push("no VCEK/VLEK certificate given (--vcek)".to_string());
            None
        }
    };

    let mut chain_product = None;
    if let Some(vek) = &vek {
        match verify_chain(vek, evidence.chain, report.signing_key) {
            Ok(product) => {
                verdict.chain_valid = true;
                chain_product = Some(product);
            }
            Err(e) => reasons.push(format!("certificate chain: {e}")),
        }
        match verify_report_signature(&raw, &report, vek) {
            Ok(()) => verdict.signature_valid = true,
            Err(e) => reasons.push(format!("report signature: {e}")),
        }
    }

    let product = report
        .product()
        .or(chain_product)
        .or_else(|| vek.as_ref().and_then(product_from_certificate));
    let vek_tcb = match (&vek, product) {
        (Some(vek), Some(product)) => match certified_tcb(vek, product) {
            Ok(tcb) => Some(tcb),
            Err(e) => {
                reasons.push(format!("VCEK/VLEK TCB extensions: {e}"));
                None
            }
        },
        _ => None,
    };
    let reported_tcb = product.map(|p| report.reported_tcb.decode(p));
    match (reported_tcb, vek_tcb) {
        (Some(reported), Some(certified)) if reported == certified => verdict.tcb_valid = true,
        (Some(reported), Some(certified)) => {
            if !policy.allow_tcb_mismatch {
                reasons.push(format!(
                    "reported TCB {} differs from the certificate's TCB {}",
                    tcb_text(&reported),
                    tcb_text(&certified)
                ));
            }
        }
        (None, _) => reasons.push("unknown product: cannot decode the TCB".to_string()),
        (Some(_), None) => {}
    }
    if let (Some(vek), SigningKey::Vcek) = (&vek, report.signing_key)
        && let Err(e) = check_hardware_id(vek, &report)
    {
        verdict.tcb_valid = false;
        reasons.push(e);
    }

    apply_policy(&report, reported_tcb, policy, &mut reasons);

    verdict.version = Some(report.version);
    verdict.product = product.map(Product::name);
    verdict.cpuid = report.cpuid.map(|c| [c.family, c.model, c.stepping]);
    verdict.signing_key = Some(report.signing_key.name());
    verdict.measurement = Some(hex(report.measurement));
    verdict.report_data = Some(hex(report.report_data));
    verdict.host_data = Some(hex(report.host_data));
    verdict.id_key_digest = Some(hex(report.id_key_digest));
    verdict.author_key_digest = Some(hex(report.author_key_digest));
    verdict.family_id = Some(hex(report.family_id));
    verdict.image_id = Some(hex(report.image_id));
    verdict.report_id = Some(hex(report.report_id));
    verdict.chip_id = Some(hex(report.chip_id));
    verdict.vmpl = Some(report.vmpl);
    verdict.guest_svn = Some(report.guest_svn);
    verdict.policy = Some(format!("{:#x}", report.policy.0));
    verdict.debug = Some(report.policy.debug());
    verdict.platform_info = Some(format!("{:#x}", report.platform_info));
    verdict.reported_tcb = reported_tcb.map(Into::into);
    verdict.vek_tcb = vek_tcb.map(Into::into);
    if let Some(p) = product {
        verdict.current_tcb = Some(report.current_tcb.decode(p).into());
        verdict.committed_tcb = Some(report.committed_tcb.decode(p).into());
        verdict.launch_tcb = Some(report.launch_tcb.decode(p).into());
    }
    let fw = report.current_firmware;
    verdict.firmware = Some(format!("{}.{}.{}", fw.major, fw.minor, fw.build));
    verdict.accepted = reasons.is_empty();
    verdict.reasons = reasons;
    verdict
}

fn tcb_text(t: &TcbVersion) -> String {
    let fmc = t.fmc.map(|f| format!("fmc={f} ")).unwrap_or_default();
    format!(
        "({fmc}bl={} tee={} snp={} ucode={})",
        t.bootloader, t.tee, t.snp, t.microcode
    )
}

fn apply_policy(
    report: &SnpReport,
    reported_tcb: Option<TcbVersion>,
    policy: &Policy,
    reasons: &mut Vec<String>,
) {
    if report.policy.debug() && !policy.allow_debug {
        reasons.push("debug guest: guest policy allows the host to debug it".to_string());
    }
    if report.vmpl != policy.vmpl {
        reasons.push(format!(
            "VMPL {} is not the required VMPL {}",
            report.vmpl, policy.vmpl
        ));
    }
    if !policy
        .signing_keys
        .iter()
        .any(|k| k == report.signing_key.name())
    {
        reasons.push(format!(
            "signing key {} is not accepted",
            report.signing_key.name()
        ));
    }
    if let Some(tcb) = reported_tcb {
        let min = &policy.min_tcb;
        let minimum = TcbVersion {
            fmc: min.fmc,
            bootloader: min.bootloader.unwrap_or(0),
            tee: min.tee.unwrap_or(0),
            snp: min.snp.unwrap_or(0),
            microcode: min.microcode.unwrap_or(0),
        };
        if !tcb.at_least(&minimum) {
            reasons.push(format!(
                "reported TCB {} is below the minimum {}",
                tcb_text(&tcb),
                tcb_text(&minimum)
            ));
        }
    }
    if !policy.measurements.is_empty()
        && !policy
            .measurements
            .iter()
            .any(|m| hex_eq(m, &report.measurement))
    {
        reasons.push(format!(
            "measurement {} is not in the allowlist",
            hex(report.measurement)
        ));
    }
    if let Some(expected) = &policy.host_data
        && !hex_eq(expected, &report.host_data)
    {
        reasons.push(format!(
            "HOST_DATA {} is not the expected {expected}",
            hex(report.host_data)
        ));
    }
    if let Some(expected) = &policy.report_data
        && !hex_eq(expected, &report.report_data)
    {
        reasons.push("REPORT_DATA is not the expected value".to_string());
    }
}

fn verify_report_signature(
    raw: &[u8],
    report: &SnpReport,
    vek: &Certificate,
) -> Result<(), String> {
    if report.signature_algo != crate::evidence::snp::SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(format!(
            "unsupported signature algorithm {}",
            report.signature_algo
        ));
    }
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(x509::public_key(vek))
        .map_err(|_| "the certificate's key is not a P-384 key".to_string())?;
    let (r, s) = report
        .signature
        .to_big_endian_p384()
        .ok_or_else(|| "signature scalars exceed 48 bytes".to_string())?;
    let signature = p384::ecdsa::Signature::from_scalars(r, s)
        .map_err(|_| "malformed signature".to_string())?;
    key.verify(&raw[..SIGNED_LEN], &signature)
        .map_err(|_| "not signed by the given VCEK/VLEK".to_string())
}

/// Verifies ARK → intermediate → VEK and returns the product line of the pinned ARK.
fn verify_chain(
    vek: &Certificate,
    chain: Option<&[u8]>,
    signing_key: SigningKey,
) -> Result<Product, String> {
    let vek_der = x509::to_der(vek)?;
    match chain {
        Some(pem) => {
            let certs = x509::load_pem_chain(pem)?;
            let (arks, intermediates): (Vec<_>, Vec<_>) =
                certs.into_iter().partition(x509::is_self_issued);
            let (ark, intermediate) = match (arks.as_slice(), intermediates.as_slice()) {
                ([ark], [intermediate]) => (ark, intermediate),
                _ => return Err("the chain must hold one ARK and one ASK/ASVK".to_string()),
            };
            let ark_der = x509::to_der(ark)?;
            let product = roots::AMD
                .iter()
                .find(|roots| pem_der(roots.ark).is_ok_and(|pinned| pinned == ark_der))
                .map(|roots| roots.product)
                .ok_or_else(|| format!("root {} is not a pinned AMD ARK", x509::subject(ark)))?;
            verify_rsa_chain(&ark_der, &x509::to_der(intermediate)?, &vek_der)?;
            Ok(product)
        }
        None => {
            let issuer = vek.tbs_certificate().issuer();
            let mut last_error =
                format!("no built-in AMD certificate issued {}", x509::subject(vek));
            for roots in &roots::AMD {
                let intermediate = match signing_key {
                    SigningKey::Vlek => roots.asvk,
                    _ => roots.ask,
                };
                let intermediate = x509::load_one(intermediate)?;
                if intermediate.tbs_certificate().subject() != issuer {
                    continue;
                }
                let ark_der = pem_der(roots.ark)?;
                match verify_rsa_chain(&ark_der, &x509::to_der(&intermediate)?, &vek_der) {
                    Ok(()) => return Ok(roots.product),
                    Err(e) => last_error = e,
                }
            }
            Err(last_error)
        }
    }
}

fn pem_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    x509::to_der(&x509::load_one(pem)?)
}

/// RSA-PSS/SHA-384 signatures of the AMD chain, by virtee `sev`.
fn verify_rsa_chain(ark: &[u8], intermediate: &[u8], vek: &[u8]) -> Result<(), String> {
    use sev::certs::snp::Certificate as SevCert;
    let load = |der: &[u8]| SevCert::from_der(der).map_err(|e| e.to_string());
    let (ark, intermediate, vek) = (load(ark)?, load(intermediate)?, load(vek)?);
    (&ark, &ark)
        .verify()
        .map_err(|e| format!("ARK self-signature: {e}"))?;
    (&ark, &intermediate)
        .verify()
        .map_err(|e| format!("ARK does not sign the ASK/ASVK: {e}"))?;
    (&intermediate, &vek)
        .verify()
        .map_err(|e| format!("ASK/ASVK does not sign the VCEK/VLEK: {e}"))
}

/// The TCB the VCEK/VLEK certifies (extensions `blSPL`, `teeSPL`, `snpSPL`, `ucodeSPL`, and
/// `fmcSPL` on Turin).
fn certified_tcb(vek: &Certificate, product: Product) -> Result<TcbVersion, String> {
    let spl = |oid: &ObjectIdentifier, name: &str| -> Result<u8, String> {
        let value = x509::extension(vek, oid).ok_or_else(|| format!("missing {name}"))?;
        u8::from_der(value).map_err(|e| format!("bad {name}: {e}"))
    };
    Ok(TcbVersion {
        fmc: match product {
            Product::Turin => Some(spl(&amd_oid::FMC_SPL, "fmcSPL")?),
            Product::Milan | Product::Genoa => None,
        },
        bootloader: spl(&amd_oid::BL_SPL, "blSPL")?,
        tee: spl(&amd_oid::TEE_SPL, "teeSPL")?,
        snp: spl(&amd_oid::SNP_SPL, "snpSPL")?,
        microcode: spl(&amd_oid::UCODE_SPL, "ucodeSPL")?,
    })
}

/// The product line a VCEK/VLEK names in its `productName` extension ("Milan-B0", "Genoa", …).
fn product_from_certificate(vek: &Certificate) -> Option<Product> {
    let value = x509::extension(vek, &amd_oid::PRODUCT_NAME)?;
    let name = Ia5StringRef::from_der(value).ok()?.as_str().to_string();
    [Product::Milan, Product::Genoa, Product::Turin]
        .into_iter()
        .find(|p| name.starts_with(p.name()))
}

/// A VCEK names the chip it belongs to (`hwID`); it must be the report's `CHIP_ID` (Turin VCEKs
/// carry the first 8 bytes only).
fn check_hardware_id(vek: &Certificate, report: &SnpReport) -> Result<(), String> {
    let hwid = x509::extension(vek, &amd_oid::HW_ID)
        .ok_or_else(|| "VCEK has no hwID extension".to_string())?;
    let hwid = match hwid.len() {
        8 | 64 => hwid.to_vec(),
        _ => x509_cert::der::asn1::OctetString::from_der(hwid)
            .map_err(|_| "malformed hwID extension".to_string())?
            .as_bytes()
            .to_vec(),
    };
    if hwid.is_empty() || hwid.len() > 64 || report.chip_id[..hwid.len()] != hwid[..] {
        return Err("VCEK hwID does not match the report's CHIP_ID".to_string());
    }
    Ok(())
}
