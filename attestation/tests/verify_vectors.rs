//! Every evidence file of the vector set classified as `EXPECTED.json` records it, through the
//! library that `ward verify` uses.

mod common;

use common::{expected, vector};
use serde_json::Value;
use ward_attestation::verify::Policy;
use ward_attestation::verify::snp::{self, SnpEvidence, SnpVerdict};
use ward_attestation::verify::tdx::{self, TdxEvidence, TdxVerdict};

/// Collateral and an evaluation time inside its validity window, for the quotes that have one.
pub const TDX_COLLATERAL: &[(&str, &str, u64)] = &[
    // 2025-06-25T00:00:00Z
    (
        "tdx/dcap-qvl/sample_tdx_quote",
        "tdx/dcap-qvl/sample_tdx_quote_collateral.json",
        1_750_809_600,
    ),
    // 2026-02-25T00:00:00Z
    (
        "tdx/dcap-qvl/sample_tdx_quote_outdated",
        "tdx/dcap-qvl/sample_tdx_quote_outdated_collateral.json",
        1_771_977_600,
    ),
];

fn snp_verdict(case: &Value, with_chain: bool) -> SnpVerdict {
    let report = vector(case["report"].as_str().unwrap());
    let vek = vector(case["vek"].as_str().unwrap());
    let chain: Vec<u8> = case["chain"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|path| vector(path.as_str().unwrap()))
        .collect();
    let evidence = SnpEvidence {
        report: &report,
        vek: Some(&vek),
        chain: with_chain.then_some(chain.as_slice()),
    };
    snp::verify(&evidence, &Policy::default())
}

fn tcb_matches(json: &Value, tcb: &snp::TcbJson, keys: [&str; 5]) -> bool {
    let [bl, tee, snp_key, ucode, fmc] = keys;
    json[bl] == tcb.bootloader
        && json[tee] == tcb.tee
        && json[snp_key] == tcb.snp
        && json[ucode] == tcb.microcode
        && json.get(fmc).and_then(Value::as_u64).map(|v| v as u8) == tcb.fmc
}

#[test]
fn snp_reports_are_classified_as_expected() {
    let cases = expected()["snp"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let name = case["report"].as_str().unwrap();
        for with_chain in [true, false] {
            let v = snp_verdict(case, with_chain);
            let context = format!("{name} (chain given: {with_chain}): {:?}", v.reasons);
            assert_eq!(
                v.signature_valid,
                case["report_sig_ok"].as_bool().unwrap(),
                "{context}"
            );
            assert_eq!(
                v.chain_valid,
                case["chain_ok"].as_bool().unwrap(),
                "{context}"
            );
            assert!(v.tcb_valid, "{context}");
            assert_eq!(
                v.version,
                Some(case["version"].as_u64().unwrap() as u32),
                "{context}"
            );
            assert_eq!(
                v.measurement.as_deref(),
                case["measurement"].as_str(),
                "{context}"
            );
            assert_eq!(
                v.report_data.as_deref(),
                case["report_data"].as_str(),
                "{context}"
            );
            assert_eq!(
                v.host_data.as_deref(),
                case["host_data"].as_str(),
                "{context}"
            );
            assert_eq!(
                v.id_key_digest.as_deref(),
                case["id_key_digest"].as_str(),
                "{context}"
            );
            assert_eq!(v.chip_id.as_deref(), case["chip_id"].as_str(), "{context}");
            assert_eq!(v.policy.as_deref(), case["policy"].as_str(), "{context}");
            assert_eq!(
                v.platform_info.as_deref(),
                case["platform_info"].as_str(),
                "{context}"
            );
            assert_eq!(v.signing_key, case["signing_key"].as_str(), "{context}");
            assert_eq!(
                v.vmpl,
                Some(case["vmpl"].as_u64().unwrap() as u32),
                "{context}"
            );
            let cpuid = v.cpuid.map(|c| serde_json::json!(c)).unwrap_or(Value::Null);
            assert_eq!(cpuid, case["cpuid_fms"], "{context}");
            let product = case["product"].as_str().unwrap();
            assert!(product.starts_with(v.product.unwrap()), "{context}");
            let fw = &case["fw_current"];
            let firmware = format!("{}.{}.{}", fw[2], fw[1], fw[0]);
            assert_eq!(v.firmware.as_deref(), Some(firmware.as_str()), "{context}");
            let reported = v.reported_tcb.as_ref().unwrap();
            assert!(
                tcb_matches(
                    &case["reported_tcb_parts"],
                    reported,
                    ["bl", "tee", "snp", "ucode", "fmc"]
                ),
                "{context}"
            );
            let certified = v.vek_tcb.as_ref().unwrap();
            assert!(
                tcb_matches(
                    &case["vek_tcb_ext"],
                    certified,
                    ["blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL"]
                ),
                "{context}"
            );
            let policy = u64::from_str_radix(
                case["policy"].as_str().unwrap().trim_start_matches("0x"),
                16,
            )
            .unwrap();
            let debug = policy & (1 << 19) != 0;
            assert_eq!(v.debug, Some(debug), "{context}");
            // Under the default policy: valid evidence from a non-debug guest at VMPL 0.
            let should_accept = !debug && case["vmpl"] == 0;
            assert_eq!(v.accepted, should_accept, "{context}");
            if debug {
                assert!(
                    v.reasons.iter().any(|r| r.starts_with("debug guest")),
                    "{context}"
                );
            }
            if case["vmpl"] != 0 {
                assert!(
                    v.reasons.iter().any(|r| r.starts_with("VMPL 1 ")),
                    "{context}"
                );
            }
            assert_eq!(
                v.reasons.len(),
                usize::from(debug) + usize::from(case["vmpl"] != 0),
                "{context}"
            );
        }
    }
}

/// Collateral for the go-tdx-guest v5 sample: its TCB info (the signed `tcbInfo` text and
/// signature of the Intel PCS response in the vectors) with the QE identity and CRLs of the
/// dcap-qvl v5 collateral (same FMSPC, overlapping validity), all signed by Intel.
fn go_tdx_guest_v5_collateral() -> Vec<u8> {
    let response = String::from_utf8(vector(
        "tdx/go-tdx-guest/testing_testdata_sample_tcbinfo_response_v5",
    ))
    .unwrap();
    let start = response.find("\"tcbInfo\":").unwrap() + "\"tcbInfo\":".len();
    let end = response.rfind(",\"signature\"").unwrap();
    let signature: Value = serde_json::from_str(&response).unwrap();
    let mut collateral: Value = serde_json::from_slice(&vector(
        "tdx/dcap-qvl/sample_tdx_quote_outdated_collateral.json",
    ))
    .unwrap();
    collateral["tcb_info"] = Value::from(&response[start..end]);
    collateral["tcb_info_signature"] = signature["signature"].clone();
    collateral["tcb_info_issuer_chain"] =
        Value::from(String::from_utf8(vector("tdx/derived_intel_tcb_signing_chain.pem")).unwrap());
    serde_json::to_vec(&collateral).unwrap()
}

/// The collateral JSON and evaluation time for a quote, when the vectors have collateral for it.
fn collateral_for(quote_path: &str) -> Option<(Vec<u8>, u64)> {
    if quote_path == "tdx/go-tdx-guest/testing_testdata_quote_v5_sample.dat" {
        return Some((go_tdx_guest_v5_collateral(), TDX_COLLATERAL[1].2));
    }
    TDX_COLLATERAL
        .iter()
        .find(|(q, _, _)| *q == quote_path)
        .map(|(_, c, at)| (vector(c), *at))
}

pub fn tdx_verdict(quote_path: &str, policy: &Policy) -> TdxVerdict {
    let quote = vector(quote_path);
    let collateral = collateral_for(quote_path);
    // Quotes without collateral are checked at the collateral time of the second sample, so the
    // PCK certificates' validity does not depend on the day the tests run.
    let at = collateral
        .as_ref()
        .map_or(TDX_COLLATERAL[1].2, |(_, at)| *at);
    let collateral = collateral.as_ref().map(|(json, _)| json.as_slice());
    tdx::verify(
        &TdxEvidence {
            quote: &quote,
            collateral,
            at,
        },
        policy,
    )
}

#[test]
fn tdx_quotes_are_classified_as_expected() {
    let cases = expected()["tdx"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let name = case["quote"].as_str().unwrap();
        let v = tdx_verdict(name, &Policy::default());
        let context = format!("{name}: {:?}", v.reasons);
        assert_eq!(
            v.quote_signature_valid,
            case["quote_sig_ok"].as_bool().unwrap(),
            "{context}"
        );
        assert_eq!(
            v.qe_report_signature_valid,
            case["qe_report_sig_ok"].as_bool().unwrap(),
            "{context}"
        );
        assert_eq!(
            v.qe_report_binds_attestation_key,
            case["qe_report_data_binds_ak"].as_bool().unwrap(),
            "{context}"
        );
        assert!(v.signature_valid, "{context}");
        assert_eq!(
            v.chain_valid,
            case["pck_chain_ok"].as_bool().unwrap(),
            "{context}"
        );
        assert_eq!(
            v.version,
            Some(case["version"].as_u64().unwrap() as u16),
            "{context}"
        );
        assert_eq!(
            v.body_type,
            case["body_type"].as_u64().map(|t| t as u16),
            "{context}"
        );
        assert_eq!(
            v.tee_type.as_deref(),
            case["tee_type"].as_str(),
            "{context}"
        );
        assert_eq!(v.fmspc.as_deref(), case["fmspc"].as_str(), "{context}");
        assert_eq!(
            v.pce_svn,
            case["pcesvn"].as_u64().map(|s| s as u16),
            "{context}"
        );
        for field in [
            "mr_td",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
            "mr_seam",
            "mr_config_id",
            "xfam",
            "td_attributes",
            "tee_tcb_svn",
            "report_data",
        ] {
            let ours = serde_json::to_value(&v).unwrap()[field].clone();
            assert_eq!(ours, case[field], "{context}: {field}");
        }
        let debug =
            u8::from_str_radix(&case["td_attributes"].as_str().unwrap()[..2], 16).unwrap() & 1 != 0;
        assert_eq!(v.debug, Some(debug), "{context}");
        let has_collateral = collateral_for(name).is_some();
        let expected_status = if has_collateral {
            case["tcb_status"][0].as_str().unwrap()
        } else {
            "Unknown"
        };
        assert_eq!(v.tcb_status, expected_status, "{context}");
        // Default policy: refuses debug TDs, TCB statuses other than current ones, and a TCB it
        // could not evaluate.
        let should_accept = !debug && expected_status == "UpToDate";
        assert_eq!(v.accepted, should_accept, "{context}");
        if debug {
            assert!(
                v.reasons.iter().any(|r| r.starts_with("debug TD")),
                "{context}"
            );
        }
        if expected_status == "NoMatch" {
            assert!(
                v.reasons
                    .iter()
                    .any(|r| r == "TCB status NoMatch is not accepted"),
                "{context}"
            );
        }
        if !has_collateral {
            assert!(
                v.reasons
                    .iter()
                    .any(|r| r.starts_with("TCB status unknown")),
                "{context}"
            );
        }
    }
}
