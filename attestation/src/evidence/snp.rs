//! The SEV-SNP `ATTESTATION_REPORT` (SEV-SNP Firmware ABI 56860, table "ATTESTATION_REPORT
//! Structure"): 1184 bytes, of which the first 0x2A0 are signed by the VCEK or VLEK with ECDSA
//! P-384 / SHA-384.

use super::EvidenceError;
use super::reader::Reader;

/// Size of a report.
pub const REPORT_SIZE: usize = 0x4A0;
/// The signed part of a report: everything before the signature.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only algorithm defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// A parsed attestation report. Field names follow the ABI specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: GuestPolicy,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: RawTcb,
    pub platform_info: u64,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    pub signing_key: SigningKey,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: RawTcb,
    /// CPUID family, model and stepping of the chip (version 3 and later).
    pub cpuid: Option<CpuId>,
    pub chip_id: [u8; 64],
    pub committed_tcb: RawTcb,
    pub current_firmware: FirmwareVersion,
    pub committed_firmware: FirmwareVersion,
    pub launch_tcb: RawTcb,
    /// Mitigation vectors (version 5 and later).
    pub launch_mit_vector: Option<u64>,
    pub current_mit_vector: Option<u64>,
    pub signature: ReportSignature,
}

/// The guest policy fixed at launch (ABI table "Guest Policy Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    pub fn migrate_ma(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    /// The hypervisor may read and write the guest's memory: never trust such a guest.
    pub fn debug(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    pub fn single_socket(self) -> bool {
        self.0 & (1 << 20) != 0
    }
}

/// Which key signed the report (`SIGNING_KEY` in the flags word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key: unique to the chip and its TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: loaded by a cloud provider, shared by its fleet.
    Vlek,
    /// The report is unsigned.
    None,
}

impl SigningKey {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
            Self::None => "none",
        }
    }
}

/// CPUID family / model / stepping as the report records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuId {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// SNP firmware version as `major.minor` and build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

/// ECDSA signature: R and S as 72-byte little-endian fields (only the low 48 bytes are used
/// for P-384; the rest must be zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSignature {
    pub r: [u8; 72],
    pub s: [u8; 72],
}

impl ReportSignature {
    /// R and S as big-endian 48-byte scalars, or `None` if a high byte is set.
    pub fn to_big_endian_p384(&self) -> Option<([u8; 48], [u8; 48])> {
        fn one(field: &[u8; 72]) -> Option<[u8; 48]> {
            if field[48..].iter().any(|b| *b != 0) {
                return None;
            }
            let mut out = [0u8; 48];
            out.copy_from_slice(&field[..48]);
            out.reverse();
            Some(out)
        }
        Some((one(&self.r)?, one(&self.s)?))
    }
}

/// The AMD product line: it fixes the layout of the TCB version word and the pinned root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// The product of a chip from its CPUID family and model (AMD PPR family 19h / 1Ah).
    pub fn from_cpuid(cpuid: CpuId) -> Option<Self> {
        match (cpuid.family, cpuid.model) {
            (0x19, 0x00..=0x0f) => Some(Self::Milan),
            (0x19, 0x10..=0x1f | 0xa0..=0xaf) => Some(Self::Genoa),
            (0x1a, 0x00..=0x1f) => Some(Self::Turin),
            _ => None,
        }
    }
}

/// A TCB version word as it sits in the report (8 bytes); its layout depends on the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTcb(pub [u8; 8]);

/// A TCB version with its security patch levels (SPLs) decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcbVersion {
    /// Firmware mask ROM / FMC SPL: Turin and later only.
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl RawTcb {
    /// Decodes the SPLs. Milan and Genoa: bootloader, TEE, 4 reserved bytes, SNP, microcode.
    /// Turin: FMC, bootloader, TEE, SNP, 3 reserved bytes, microcode.
    pub fn decode(self, product: Product) -> TcbVersion {
        let b = self.0;
        match product {
            Product::Milan | Product::Genoa => TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            Product::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

impl TcbVersion {
    /// True when every SPL is at least the one in `minimum` (an absent FMC counts as 0).
    pub fn at_least(&self, minimum: &TcbVersion) -> bool {
        self.fmc.unwrap_or(0) >= minimum.fmc.unwrap_or(0)
            && self.bootloader >= minimum.bootloader
            && self.tee >= minimum.tee
            && self.snp >= minimum.snp
            && self.microcode >= minimum.microcode
    }
}

impl SnpReport {
    /// Parses exactly one report (no trailing bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() < REPORT_SIZE {
            return Err(EvidenceError::Truncated {
                what: "SNP report",
                needed: REPORT_SIZE,
                available: bytes.len(),
            });
        }
        if bytes.len() > REPORT_SIZE {
            return Err(EvidenceError::TrailingBytes {
                what: "SNP report",
                extra: bytes.len() - REPORT_SIZE,
            });
        }
        let mut r = Reader::new(bytes, "SNP report");
        let version = r.u32()?;
        if !(2..=5).contains(&version) {
            return Err(EvidenceError::Unsupported {
                what: "SNP report version",
                value: version,
            });
        }
        let guest_svn = r.u32()?;
        let policy = GuestPolicy(r.u64()?);
        let family_id = r.array()?;
        let image_id = r.array()?;
        let vmpl = r.u32()?;
        if vmpl > 3 {
            return Err(EvidenceError::Invalid {
                what: "SNP report VMPL",
                reason: "above 3",
            });
        }
        let signature_algo = r.u32()?;
        let current_tcb = RawTcb(r.array()?);
        let platform_info = r.u64()?;
        let flags = r.u32()?;
        let signing_key = match (flags >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => {
                return Err(EvidenceError::Unsupported {
                    what: "SNP signing key",
                    value: other,
                });
            }
        };
        r.skip(4)?;
        let report_data = r.array()?;
        let measurement = r.array()?;
        let host_data = r.array()?;
        let id_key_digest = r.array()?;
        let author_key_digest = r.array()?;
        let report_id = r.array()?;
        let report_id_ma = r.array()?;
        let reported_tcb = RawTcb(r.array()?);
        let [family, model, stepping] = r.array()?;
        let cpuid = (version >= 3).then_some(CpuId {
            family,
            model,
            stepping,
        });
        r.skip(0x1A0 - r.offset())?;
        let chip_id = r.array()?;
        let committed_tcb = RawTcb(r.array()?);
        let current_firmware = firmware_version(&mut r)?;
        let committed_firmware = firmware_version(&mut r)?;
        let launch_tcb = RawTcb(r.array()?);
        let launch_mit_vector = r.u64()?;
        let current_mit_vector = r.u64()?;
        let (launch_mit_vector, current_mit_vector) = if version >= 5 {
            (Some(launch_mit_vector), Some(current_mit_vector))
        } else {
            (None, None)
        };
        r.skip(SIGNED_LEN - r.offset())?;
        let signature = ReportSignature {
            r: r.array()?,
            s: r.array()?,
        };
        // The rest of the signature field is reserved and, unlike everything before it, not
        // covered by the signature: it must be zero so a report carries no unsigned content.
        if r.take(REPORT_SIZE - r.offset())?.iter().any(|b| *b != 0) {
            return Err(EvidenceError::Invalid {
                what: "SNP report signature field",
                reason: "reserved bytes are not zero",
            });
        }
        r.finish()?;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            author_key_en: flags & 1 != 0,
            mask_chip_key: flags & 2 != 0,
            signing_key,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_firmware,
            committed_firmware,
            launch_tcb,
            launch_mit_vector,
            current_mit_vector,
            signature,
        })
    }

    /// The product named by the report's CPUID fields, when it has them.
    pub fn product(&self) -> Option<Product> {
        self.cpuid.and_then(Product::from_cpuid)
    }
}

fn firmware_version(r: &mut Reader<'_>) -> Result<FirmwareVersion, EvidenceError> {
    let [build, minor, major, _reserved] = r.array()?;
    Ok(FirmwareVersion {
        major,
        minor,
        build,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; REPORT_SIZE] {
        let mut report = [0u8; REPORT_SIZE];
        report[0] = 5;
        report[0x08..0x10].copy_from_slice(&0x3_0000u64.to_le_bytes());
        report[0x48] = 1 << 2; // VLEK
        report[0x188..0x18b].copy_from_slice(&[0x1a, 0x02, 0x01]);
        report[0x180..0x188].copy_from_slice(&[0, 1, 0, 2, 0, 0, 0, 0x47]);
        report[0x2A0] = 7;
        report
    }

    #[test]
    fn parses_fields_at_their_offsets() {
        let report = SnpReport::parse(&sample()).unwrap();
        assert_eq!(report.version, 5);
        assert!(!report.policy.debug());
        assert!(report.policy.smt_allowed());
        assert_eq!(report.signing_key, SigningKey::Vlek);
        assert_eq!(report.product(), Some(Product::Turin));
        let tcb = report.reported_tcb.decode(Product::Turin);
        assert_eq!(
            (tcb.fmc, tcb.bootloader, tcb.snp, tcb.microcode),
            (Some(0), 1, 2, 0x47)
        );
        assert_eq!(report.signature.r[0], 7);
        assert!(report.launch_mit_vector.is_some());
    }

    #[test]
    fn rejects_wrong_sizes_and_versions() {
        let report = sample();
        assert!(matches!(
            SnpReport::parse(&report[..REPORT_SIZE - 1]),
            Err(EvidenceError::Truncated { .. })
        ));
        let mut longer = report.to_vec();
        longer.push(0);
        assert!(matches!(
            SnpReport::parse(&longer),
            Err(EvidenceError::TrailingBytes { .. })
        ));
        let mut bad = report;
        bad[0] = 1;
        assert!(matches!(
            SnpReport::parse(&bad),
            Err(EvidenceError::Unsupported { .. })
        ));
        let mut bad = report;
        bad[0x30] = 4;
        assert!(matches!(
            SnpReport::parse(&bad),
            Err(EvidenceError::Invalid { .. })
        ));
        let mut bad = report;
        bad[0x48] = 3 << 2;
        assert!(matches!(
            SnpReport::parse(&bad),
            Err(EvidenceError::Unsupported { .. })
        ));
        let mut bad = report;
        bad[REPORT_SIZE - 1] = 1;
        assert!(matches!(
            SnpReport::parse(&bad),
            Err(EvidenceError::Invalid { .. })
        ));
    }

    #[test]
    fn signature_scalars_are_little_endian() {
        let mut report = sample();
        report[0x2A0] = 0x11;
        report[0x2A0 + 47] = 0x22;
        let parsed = SnpReport::parse(&report).unwrap();
        let (r, _) = parsed.signature.to_big_endian_p384().unwrap();
        assert_eq!((r[0], r[47]), (0x22, 0x11));
        report[0x2A0 + 50] = 1;
        let parsed = SnpReport::parse(&report).unwrap();
        assert!(parsed.signature.to_big_endian_p384().is_none());
    }
}
