//! What a relying party accepts, beyond valid signatures (format: `docs/policy.md`). Every field
//! is optional; the defaults are the safe choice: no debug guests, VMPL 0, the report's TCB equal
//! to the one its VCEK/VLEK certifies, a TDX TCB status that Intel rates as current.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use serde::Deserialize;

/// Minimum SNP security patch levels; absent ones are not checked.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MinimumTcb {
    pub fmc: Option<u8>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Accept guests whose memory the host can read (SNP policy DEBUG, TD attribute DEBUG).
    pub allow_debug: bool,
    /// SNP: the VMPL the report must come from.
    pub vmpl: u32,
    /// SNP: signing keys accepted ("VCEK", "VLEK").
    pub signing_keys: Vec<String>,
    /// SNP: minimum reported TCB.
    pub min_tcb: MinimumTcb,
    /// SNP: accept a report whose TCB differs from its certificate's.
    pub allow_tcb_mismatch: bool,
    /// SNP `MEASUREMENT` allowlist (hex); empty means any.
    pub measurements: Vec<String>,
    /// SNP `HOST_DATA` (hex) the report must carry: the deployment configuration's SHA-256.
    pub host_data: Option<String>,
    /// TDX `MRTD` allowlist (hex); empty means any.
    pub mr_td: Vec<String>,
    /// TDX RTMR0..3 expected values (hex); `null` entries are not checked.
    pub rtmr: Vec<Option<String>>,
    /// TDX `MRCONFIGID` (hex): the deployment configuration's SHA-384.
    pub mr_config_id: Option<String>,
    /// TDX `XFAM` (hex, 8 bytes as in the quote).
    pub xfam: Option<String>,
    /// TDX TCB statuses accepted.
    pub tdx_tcb_statuses: Vec<String>,
    /// Both: `REPORT_DATA` (hex, 64 bytes) the evidence must carry.
    pub report_data: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_debug: false,
            vmpl: 0,
            signing_keys: vec!["VCEK".to_string(), "VLEK".to_string()],
            min_tcb: MinimumTcb::default(),
            allow_tcb_mismatch: false,
            measurements: Vec::new(),
            host_data: None,
            mr_td: Vec::new(),
            rtmr: Vec::new(),
            mr_config_id: None,
            xfam: None,
            tdx_tcb_statuses: DEFAULT_TDX_TCB_STATUSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            report_data: None,
        }
    }
}

/// TCB statuses in which the platform is patched up to the latest TCB recovery; the
/// configuration and software-hardening advisories they carry are listed in the verdict.
pub const DEFAULT_TDX_TCB_STATUSES: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
];

/// The TCB statuses a policy may accept. `Revoked`, `NoMatch` and `Unknown` never are.
pub const ACCEPTABLE_TDX_TCB_STATUSES: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
];

/// Why a policy file was refused.
#[derive(Debug)]
pub struct PolicyError(String);

impl core::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid policy: {}", self.0)
    }
}

impl core::error::Error for PolicyError {}

impl Policy {
    /// Parses a JSON policy and checks that every hex value has its field's length.
    pub fn from_json(text: &[u8]) -> Result<Self, PolicyError> {
        let policy: Self = serde_json::from_slice(text).map_err(|e| PolicyError(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        let check = |name: &str, value: &str, len: usize| {
            let ok = value.len() == 2 * len && value.bytes().all(|b| b.is_ascii_hexdigit());
            if ok {
                Ok(())
            } else {
                Err(PolicyError(alloc::format!(
                    "{name} must be {len} bytes of hex"
                )))
            }
        };
        for m in &self.measurements {
            check("measurements[]", m, 48)?;
        }
        for m in &self.mr_td {
            check("mr_td[]", m, 48)?;
        }
        if self.rtmr.len() > 4 {
            return Err(PolicyError("rtmr has at most 4 entries".into()));
        }
        for r in self.rtmr.iter().flatten() {
            check("rtmr[]", r, 48)?;
        }
        if let Some(v) = &self.host_data {
            check("host_data", v, 32)?;
        }
        if let Some(v) = &self.mr_config_id {
            check("mr_config_id", v, 48)?;
        }
        if let Some(v) = &self.xfam {
            check("xfam", v, 8)?;
        }
        if let Some(v) = &self.report_data {
            check("report_data", v, 64)?;
        }
        for status in &self.tdx_tcb_statuses {
            if !ACCEPTABLE_TDX_TCB_STATUSES.contains(&status.as_str()) {
                return Err(PolicyError(alloc::format!(
                    "tdx_tcb_statuses: {status:?} cannot be accepted (one of {ACCEPTABLE_TDX_TCB_STATUSES:?})"
                )));
            }
        }
        for key in &self.signing_keys {
            if key != "VCEK" && key != "VLEK" {
                return Err(PolicyError(alloc::format!("unknown signing key {key:?}")));
            }
        }
        Ok(())
    }
}

/// Case-insensitive comparison of a policy's hex value with evidence bytes.
pub(crate) fn hex_eq(expected: &str, actual: &[u8]) -> bool {
    expected.eq_ignore_ascii_case(&super::hex(actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let policy = Policy::from_json(b"{}").unwrap();
        assert_eq!(policy, Policy::default());
        assert!(!policy.allow_debug);
        assert!(Policy::from_json(br#"{"measurements": ["00"]}"#).is_err());
        assert!(Policy::from_json(br#"{"unknown_field": 1}"#).is_err());
        assert!(Policy::from_json(br#"{"signing_keys": ["VCEK", "ARK"]}"#).is_err());
        assert!(Policy::from_json(br#"{"tdx_tcb_statuses": ["Revoked"]}"#).is_err());
        assert!(Policy::from_json(br#"{"tdx_tcb_statuses": ["OutOfDate"]}"#).is_ok());
        let p = Policy::from_json(br#"{"min_tcb": {"snp": 8}, "vmpl": 1}"#).unwrap();
        assert_eq!((p.min_tcb.snp, p.vmpl), (Some(8), 1));
    }
}
