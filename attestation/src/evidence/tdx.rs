//! Intel TDX evidence: the DCAP quote (versions 4 and 5, Intel "TDX DCAP Quoting Library API",
//! appendix "Quote Format") and the `TDREPORT_STRUCT` that `TDG.MR.REPORT` returns (TDX Module
//! ABI). A quote carries a TD report body, an ECDSA P-256 signature by the quoting enclave's
//! attestation key, and (certification data type 6) the QE report signed by the PCK key with
//! the PCK certificate chain.

use super::EvidenceError;
use super::reader::Reader;
use alloc::vec::Vec;

/// `TEE_TYPE` of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// `ATTESTATION_KEY_TYPE` for ECDSA-256 with the P-256 curve.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// Intel's quoting enclave vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Size of the quote header.
pub const HEADER_SIZE: usize = 48;
/// Size of a TD 1.0 report body; a TD 1.5 body adds `TEE_TCB_SVN2` and `MR_SERVICETD`.
pub const TD10_BODY_SIZE: usize = 584;
pub const TD15_BODY_SIZE: usize = 648;
/// Size of an SGX enclave report (the QE report).
pub const ENCLAVE_REPORT_SIZE: usize = 384;
/// Size of a `TDREPORT_STRUCT`.
pub const TDREPORT_SIZE: usize = 1024;

/// Certification data types (DCAP quote format).
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
pub const CERT_DATA_QE_REPORT: u16 = 6;

/// The TD attributes word (TDX Module ABI, "ATTRIBUTES").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes(pub [u8; 8]);

impl TdAttributes {
    /// `DEBUG` (bit 0): the host can read and write the TD's state.
    pub fn debug(self) -> bool {
        self.0[0] & 1 != 0
    }
    /// `SEPT_VE_DISABLE` (bit 28).
    pub fn sept_ve_disable(self) -> bool {
        u64::from_le_bytes(self.0) & (1 << 28) != 0
    }
}

/// The measured identity of a TD: the TD report body of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportBody {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: TdAttributes,
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TD 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReportBody {
    fn parse(r: &mut Reader<'_>, td15: bool) -> Result<Self, EvidenceError> {
        let tee_tcb_svn = r.array()?;
        let mr_seam = r.array()?;
        let mr_signer_seam = r.array()?;
        let seam_attributes = r.array()?;
        let td_attributes = TdAttributes(r.array()?);
        let xfam = r.array()?;
        let mr_td = r.array()?;
        let mr_config_id = r.array()?;
        let mr_owner = r.array()?;
        let mr_owner_config = r.array()?;
        let rtmr = [r.array()?, r.array()?, r.array()?, r.array()?];
        let report_data = r.array()?;
        let (tee_tcb_svn2, mr_service_td) = if td15 {
            (Some(r.array()?), Some(r.array()?))
        } else {
            (None, None)
        };
        Ok(Self {
            tee_tcb_svn,
            mr_seam,
            mr_signer_seam,
            seam_attributes,
            td_attributes,
            xfam,
            mr_td,
            mr_config_id,
            mr_owner,
            mr_owner_config,
            rtmr,
            report_data,
            tee_tcb_svn2,
            mr_service_td,
        })
    }
}

/// An SGX enclave report: here, the quoting enclave's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    /// The 384 raw bytes: the PCK key signs exactly these.
    pub raw: [u8; ENCLAVE_REPORT_SIZE],
    pub cpu_svn: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    fn parse(raw: [u8; ENCLAVE_REPORT_SIZE]) -> Self {
        let field = |at: usize, len: usize| &raw[at..at + len];
        let mut cpu_svn = [0u8; 16];
        cpu_svn.copy_from_slice(field(0, 16));
        let mut mr_enclave = [0u8; 32];
        mr_enclave.copy_from_slice(field(64, 32));
        let mut mr_signer = [0u8; 32];
        mr_signer.copy_from_slice(field(128, 32));
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(field(320, 64));
        Self {
            raw,
            cpu_svn,
            mr_enclave,
            mr_signer,
            isv_prod_id: u16::from_le_bytes([raw[256], raw[257]]),
            isv_svn: u16::from_le_bytes([raw[258], raw[259]]),
            report_data,
        }
    }
}

/// The signature section of a quote with certification data type 6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteSignature {
    /// ECDSA P-256 signature `r || s` (big-endian) over header and body, by the attestation key.
    pub quote_signature: [u8; 64],
    /// The attestation key, `x || y` (big-endian).
    pub attestation_key: [u8; 64],
    pub qe_report: EnclaveReport,
    /// ECDSA P-256 signature `r || s` over the QE report, by the PCK key.
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: Vec<u8>,
    /// The PCK certificate chain (PEM: PCK leaf, intermediate CA, root CA).
    pub pck_chain_pem: Vec<u8>,
}

/// A parsed DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuote {
    pub version: u16,
    pub attestation_key_type: u16,
    pub tee_type: u32,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
    /// Version 5 only: 2 = TD 1.0 report, 3 = TD 1.5 report.
    pub body_type: Option<u16>,
    pub body: TdReportBody,
    /// Length of the signed prefix (header and body).
    pub signed_len: usize,
    pub signature: QuoteSignature,
}

impl TdxQuote {
    /// Parses a quote; non-zero bytes after the signature data are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut r = Reader::new(bytes, "TDX quote");
        let version = r.u16()?;
        let attestation_key_type = r.u16()?;
        let tee_type = r.u32()?;
        r.skip(4)?; // reserved (QE / PCE SVN in older formats)
        let qe_vendor_id = r.array()?;
        let user_data = r.array()?;
        if tee_type != TEE_TYPE_TDX {
            return Err(EvidenceError::Unsupported {
                what: "quote TEE type",
                value: tee_type,
            });
        }
        if attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
            return Err(EvidenceError::Unsupported {
                what: "quote attestation key type",
                value: attestation_key_type.into(),
            });
        }
        let (body_type, td15) = match version {
            4 => (None, false),
            5 => {
                let body_type = r.u16()?;
                let body_size = r.u32()? as usize;
                let (td15, expected) = match body_type {
                    2 => (false, TD10_BODY_SIZE),
                    3 => (true, TD15_BODY_SIZE),
                    other => {
                        return Err(EvidenceError::Unsupported {
                            what: "quote body type",
                            value: other.into(),
                        });
                    }
                };
                if body_size != expected {
                    return Err(EvidenceError::Invalid {
                        what: "quote body size",
                        reason: "does not match the body type",
                    });
                }
                (Some(body_type), td15)
            }
            other => {
                return Err(EvidenceError::Unsupported {
                    what: "quote version",
                    value: other.into(),
                });
            }
        };
        let body = TdReportBody::parse(&mut r, td15)?;
        let signed_len = r.offset();
        let signature_len = r.u32()? as usize;
        let signature_bytes = r.take(signature_len)?;
        // Quote buffers from the quoting service are often zero-padded to a fixed size; any
        // other byte after the signature data is refused.
        let padding = r.take(r.remaining())?;
        if padding.iter().any(|b| *b != 0) {
            return Err(EvidenceError::TrailingBytes {
                what: "TDX quote",
                extra: padding.len(),
            });
        }
        let signature = parse_signature(signature_bytes)?;
        Ok(Self {
            version,
            attestation_key_type,
            tee_type,
            qe_vendor_id,
            user_data,
            body_type,
            body,
            signed_len,
            signature,
        })
    }
}

fn parse_signature(bytes: &[u8]) -> Result<QuoteSignature, EvidenceError> {
    let mut r = Reader::new(bytes, "quote signature data");
    let quote_signature = r.array()?;
    let attestation_key = r.array()?;
    let cert_type = r.u16()?;
    let cert_len = r.u32()? as usize;
    if cert_type != CERT_DATA_QE_REPORT {
        return Err(EvidenceError::Unsupported {
            what: "quote certification data type",
            value: cert_type.into(),
        });
    }
    let cert_data = r.take(cert_len)?;
    r.finish()?;

    let mut c = Reader::new(cert_data, "QE report certification data");
    let qe_report = EnclaveReport::parse(c.array()?);
    let qe_report_signature = c.array()?;
    let auth_len = usize::from(c.u16()?);
    let qe_auth_data = c.take(auth_len)?.to_vec();
    let inner_type = c.u16()?;
    let inner_len = c.u32()? as usize;
    if inner_type != CERT_DATA_PCK_CHAIN {
        return Err(EvidenceError::Unsupported {
            what: "QE certification data type",
            value: inner_type.into(),
        });
    }
    // Quote generators pad the PEM chain with NUL bytes; they are not part of it.
    let chain = c.take(inner_len)?;
    c.finish()?;
    let end = chain
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    Ok(QuoteSignature {
        quote_signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem: chain[..end].to_vec(),
    })
}

/// `TDREPORT_STRUCT`: what a TD gets from `TDG.MR.REPORT`, MACed by the CPU, before the
/// quoting enclave turns it into a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub report_type: [u8; 4],
    pub cpu_svn: [u8; 16],
    pub tee_tcb_info_hash: [u8; 48],
    pub tee_info_hash: [u8; 48],
    pub report_data: [u8; 64],
    pub mac: [u8; 32],
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: TdAttributes,
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub servtd_hash: [u8; 48],
}

impl TdReport {
    pub fn parse(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut r = Reader::new(bytes, "TDREPORT");
        // REPORTMACSTRUCT (256 bytes)
        let report_type: [u8; 4] = r.array()?;
        if report_type[0] != 0x81 {
            return Err(EvidenceError::Unsupported {
                what: "TDREPORT type",
                value: report_type[0].into(),
            });
        }
        r.skip(12)?;
        let cpu_svn = r.array()?;
        let tee_tcb_info_hash = r.array()?;
        let tee_info_hash = r.array()?;
        let report_data = r.array()?;
        r.skip(32)?;
        let mac = r.array()?;
        // TEE_TCB_INFO (239 bytes) + 17 reserved
        r.skip(8)?; // VALID bitmap
        let tee_tcb_svn = r.array()?;
        let mr_seam = r.array()?;
        let mr_signer_seam = r.array()?;
        let seam_attributes = r.array()?;
        r.skip(512 - r.offset())?;
        // TDINFO (512 bytes)
        let td_attributes = TdAttributes(r.array()?);
        let xfam = r.array()?;
        let mr_td = r.array()?;
        let mr_config_id = r.array()?;
        let mr_owner = r.array()?;
        let mr_owner_config = r.array()?;
        let rtmr = [r.array()?, r.array()?, r.array()?, r.array()?];
        let servtd_hash = r.array()?;
        r.skip(TDREPORT_SIZE - r.offset())?;
        r.finish()?;
        Ok(Self {
            report_type,
            cpu_svn,
            tee_tcb_info_hash,
            tee_info_hash,
            report_data,
            mac,
            tee_tcb_svn,
            mr_seam,
            mr_signer_seam,
            seam_attributes,
            td_attributes,
            xfam,
            mr_td,
            mr_config_id,
            mr_owner,
            mr_owner_config,
            rtmr,
            servtd_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdreport_fields_sit_at_their_offsets() {
        let mut raw = [0u8; TDREPORT_SIZE];
        raw[0] = 0x81;
        raw[128] = 0xaa; // REPORTDATA
        raw[512] = 1; // ATTRIBUTES.DEBUG
        raw[528] = 0xbb; // MRTD
        raw[528 + 48 * 4] = 0xcc; // RTMR0
        let report = TdReport::parse(&raw).unwrap();
        assert_eq!(report.report_data[0], 0xaa);
        assert!(report.td_attributes.debug());
        assert_eq!(report.mr_td[0], 0xbb);
        assert_eq!(report.rtmr[0][0], 0xcc);
        assert!(TdReport::parse(&raw[..1023]).is_err());
        raw[0] = 0;
        assert!(TdReport::parse(&raw).is_err());
    }

    #[test]
    fn short_or_foreign_quotes_are_refused() {
        assert!(matches!(
            TdxQuote::parse(&[4, 0]),
            Err(EvidenceError::Truncated { .. })
        ));
        let mut header = [0u8; HEADER_SIZE];
        header[0] = 4;
        header[2] = 2;
        header[4] = 0x00; // SGX
        assert!(matches!(
            TdxQuote::parse(&header),
            Err(EvidenceError::Unsupported { .. })
        ));
    }
}
