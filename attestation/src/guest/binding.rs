//! The deployment configuration bound to the launch (DESIGN §4): the enclave reads its own
//! evidence and refuses to run with a configuration whose digest differs from what the host
//! fixed at launch — SHA-256 = SNP HOST_DATA, SHA-384 = TDX MRCONFIGID.

use crate::evidence::EvidenceError;
use crate::evidence::snp::SnpReport;
use crate::evidence::tdx::TdReport;
use crate::measure::config::{host_data, mr_config_id};
use core::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingError {
    /// The platform's own evidence did not parse.
    Evidence(EvidenceError),
    /// The configuration's digest is not the one the launch fixed.
    Mismatch,
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Evidence(e) => write!(f, "own evidence does not parse: {e}"),
            Self::Mismatch => f.write_str(
                "deployment configuration does not match the digest fixed at launch \
                 (SNP HOST_DATA / TDX MRCONFIGID); refusing to run",
            ),
        }
    }
}

/// Checks `config` against HOST_DATA of our own SNP report.
pub fn check_snp(report: &[u8], config: &[u8]) -> Result<(), BindingError> {
    let report = SnpReport::parse(report).map_err(BindingError::Evidence)?;
    if report.host_data != host_data(config) {
        return Err(BindingError::Mismatch);
    }
    Ok(())
}

/// Checks `config` against MRCONFIGID of our own TDREPORT.
pub fn check_tdx(tdreport: &[u8], config: &[u8]) -> Result<(), BindingError> {
    let report = TdReport::parse(tdreport).map_err(BindingError::Evidence)?;
    if report.mr_config_id != mr_config_id(config) {
        return Err(BindingError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::snp::REPORT_SIZE;

    const CONFIG: &[u8] = b"{\"min_model_version\":3,\"slots\":8}";

    #[test]
    fn snp_host_data_must_be_the_config_digest() {
        let mut report = [0u8; REPORT_SIZE];
        report[0] = 2;
        report[0xC0..0xE0].copy_from_slice(&host_data(CONFIG));
        assert_eq!(check_snp(&report, CONFIG), Ok(()));
        assert_eq!(
            check_snp(&report, b"{\"slots\":8}"),
            Err(BindingError::Mismatch)
        );
        report[0xC0] ^= 1;
        assert_eq!(check_snp(&report, CONFIG), Err(BindingError::Mismatch));
        assert!(matches!(
            check_snp(&report[..100], CONFIG),
            Err(BindingError::Evidence(_))
        ));
    }

    #[test]
    fn tdx_mrconfigid_must_be_the_config_digest() {
        let mut tdreport = [0u8; 1024];
        tdreport[0] = 0x81;
        // TDINFO starts at 512: ATTRIBUTES, XFAM, MRTD (528), MRCONFIGID (576).
        tdreport[576..624].copy_from_slice(&mr_config_id(CONFIG));
        assert_eq!(check_tdx(&tdreport, CONFIG), Ok(()));
        assert_eq!(check_tdx(&tdreport, b""), Err(BindingError::Mismatch));
        tdreport[0] = 0;
        assert!(matches!(
            check_tdx(&tdreport, CONFIG),
            Err(BindingError::Evidence(_))
        ));
    }
}
