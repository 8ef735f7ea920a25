//! Evidence that must be refused, and refused for the right reason: tampered reports and quotes,
//! wrong certificates, unpinned roots, policy mismatches, expired collateral, malformed files.

mod common;

use common::vector;
use ward_attestation::verify::Policy;
use ward_attestation::verify::snp::{self, SnpEvidence, SnpVerdict};
use ward_attestation::verify::tdx::{self, TdxEvidence, TdxVerdict};

const MILAN_REPORT: &str = "snp/virtee-sev/tests_certs_data_report_milan.hex";
const GENOA_REPORT: &str = "snp/oak/genoa_oc_report.bin";
const GENOA_VCEK: &str = "snp/oak/genoa_oc_vcek.der";
const TURIN_VCEK: &str = "snp/oak/turin_oc_vcek.der";
const QUOTE: &str = "tdx/dcap-qvl/sample_tdx_quote";
const COLLATERAL: &str = "tdx/dcap-qvl/sample_tdx_quote_collateral.json";
const OUTDATED_COLLATERAL: &str = "tdx/dcap-qvl/sample_tdx_quote_outdated_collateral.json";
const COLLATERAL_TIME: u64 = 1_750_809_600; // 2025-06-25, inside the collateral's window

fn genoa_report() -> Vec<u8> {
    vector(GENOA_REPORT)
}

fn snp_check(
    report: &[u8],
    vek: Option<&[u8]>,
    chain: Option<&[u8]>,
    policy: &Policy,
) -> SnpVerdict {
    snp::verify(&SnpEvidence { report, vek, chain }, policy)
}

fn has_reason(reasons: &[String], prefix: &str) -> bool {
    reasons.iter().any(|r| r.starts_with(prefix))
}

#[test]
fn snp_tampered_report_fails_its_signature_only() {
    let mut report = genoa_report();
    report[0x90] ^= 1; // MEASUREMENT
    let v = snp_check(&report, Some(&vector(GENOA_VCEK)), None, &Policy::default());
    assert!(
        !v.signature_valid && v.chain_valid && !v.accepted,
        "{:?}",
        v.reasons
    );
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(
        has_reason(&v.reasons, "report signature: not signed"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn snp_signature_with_a_high_scalar_byte_is_refused() {
    let mut report = genoa_report();
    report[0x2A0 + 60] = 1; // inside R's 72-byte field but above P-384's 48 bytes
    let v = snp_check(&report, Some(&vector(GENOA_VCEK)), None, &Policy::default());
    assert!(!v.signature_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "report signature: signature scalars"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn snp_report_checked_with_another_chips_vcek_is_refused() {
    let v = snp_check(
        &genoa_report(),
        Some(&vector(TURIN_VCEK)),
        None,
        &Policy::default(),
    );
    assert!(!v.signature_valid && !v.tcb_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "report signature"),
        "{:?}",
        v.reasons
    );
    assert!(
        has_reason(&v.reasons, "VCEK hwID does not match"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn snp_chain_of_another_product_or_an_unpinned_root_is_refused() {
    let vcek = vector(GENOA_VCEK);
    let milan_chain = vector("snp/go-sev-guest/verify_trust_ask_ark_milan.pem");
    let v = snp_check(
        &genoa_report(),
        Some(&vcek),
        Some(&milan_chain),
        &Policy::default(),
    );
    assert!(v.signature_valid && !v.chain_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "certificate chain: ASK/ASVK does not sign"),
        "{:?}",
        v.reasons
    );

    // A self-signed root that is not an AMD ARK (Intel's), with the right ASK.
    let genoa_ask = vector("snp/virtee-sev/src_certs_snp_builtin_genoa_ask.pem");
    let intel_root_pem = vector("tdx/go-tdx-guest/verify_trusted_root.pem");
    let chain = [genoa_ask, intel_root_pem].concat();
    let v = snp_check(
        &genoa_report(),
        Some(&vcek),
        Some(&chain),
        &Policy::default(),
    );
    assert!(!v.chain_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "certificate chain: root "),
        "{:?}",
        v.reasons
    );
    assert!(
        v.reasons.iter().any(|r| r.contains("not a pinned AMD ARK")),
        "{:?}",
        v.reasons
    );
}

#[test]
fn snp_without_a_certificate_is_not_accepted() {
    let v = snp_check(&genoa_report(), None, None, &Policy::default());
    assert!(!v.signature_valid && !v.chain_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "no VCEK/VLEK certificate"),
        "{:?}",
        v.reasons
    );
    // The fields are still reported, for diagnosis.
    assert!(v.measurement.is_some());
}

#[test]
fn snp_policy_mismatches_each_give_a_reason() {
    let policy = Policy::from_json(
        br#"{
            "measurements": ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"],
            "host_data": "1111111111111111111111111111111111111111111111111111111111111111",
            "report_data": "22222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222",
            "min_tcb": {"snp": 26},
            "signing_keys": ["VLEK"]
        }"#,
    )
    .unwrap();
    let v = snp_check(&genoa_report(), Some(&vector(GENOA_VCEK)), None, &policy);
    assert!(v.signature_valid && v.chain_valid && v.tcb_valid && !v.accepted);
    for prefix in [
        "measurement ",
        "HOST_DATA ",
        "REPORT_DATA ",
        "reported TCB ",
        "signing key VCEK",
    ] {
        assert!(has_reason(&v.reasons, prefix), "{prefix}: {:?}", v.reasons);
    }
    assert_eq!(v.reasons.len(), 5, "{:?}", v.reasons);

    // The matching values are accepted.
    let genoa = &common::expected()["snp"][4];
    let policy = Policy::from_json(
        format!(
            r#"{{"measurements": ["{}"], "report_data": "{}", "host_data": "{}", "min_tcb": {{"snp": 25, "microcode": 84}}}}"#,
            genoa["measurement"].as_str().unwrap(),
            genoa["report_data"].as_str().unwrap(),
            genoa["host_data"].as_str().unwrap()
        )
        .as_bytes(),
    )
    .unwrap();
    let v = snp_check(&genoa_report(), Some(&vector(GENOA_VCEK)), None, &policy);
    assert!(v.accepted, "{:?}", v.reasons);
}

#[test]
fn snp_debug_and_vmpl_can_only_be_allowed_explicitly() {
    let debug_report = vector("snp/go-sev-guest/verify_testdata_attestation.bin");
    let vcek = vector("snp/go-sev-guest/verify_testdata_vcek.testcer");
    let v = snp_check(&debug_report, Some(&vcek), None, &Policy::default());
    assert_eq!(v.debug, Some(true));
    assert!(
        !v.accepted && has_reason(&v.reasons, "debug guest"),
        "{:?}",
        v.reasons
    );
    let allow = Policy::from_json(br#"{"allow_debug": true}"#).unwrap();
    assert!(snp_check(&debug_report, Some(&vcek), None, &allow).accepted);

    let vlek_report = vector("snp/trustee/deps_verifier_test_data_snp_test-vlek-report.bin");
    let vlek = vector("snp/trustee/deps_verifier_test_data_snp_test-vlek.der");
    let v = snp_check(&vlek_report, Some(&vlek), None, &Policy::default());
    assert!(!v.accepted && has_reason(&v.reasons, "VMPL 1 is not the required VMPL 0"));
    let vmpl1 = Policy::from_json(br#"{"vmpl": 1}"#).unwrap();
    assert!(snp_check(&vlek_report, Some(&vlek), None, &vmpl1).accepted);
}

#[test]
fn snp_malformed_reports_are_refused_with_the_parse_error() {
    let report = genoa_report();
    let vcek = vector(GENOA_VCEK);
    let v = snp_check(&report[..1000], Some(&vcek), None, &Policy::default());
    assert!(
        !v.accepted && has_reason(&v.reasons, "report: SNP report is truncated"),
        "{:?}",
        v.reasons
    );
    let v = snp_check(b"0x12 zz", Some(&vcek), None, &Policy::default());
    assert!(!v.accepted && v.measurement.is_none());
    let mut odd_version = report.clone();
    odd_version[0] = 9;
    let v = snp_check(&odd_version, Some(&vcek), None, &Policy::default());
    assert!(
        has_reason(&v.reasons, "report: unsupported SNP report version"),
        "{:?}",
        v.reasons
    );
    let v = snp_check(
        &vector(MILAN_REPORT),
        Some(b"not a certificate"),
        None,
        &Policy::default(),
    );
    assert!(
        has_reason(&v.reasons, "VCEK/VLEK certificate: bad DER"),
        "{:?}",
        v.reasons
    );
}

fn tdx_check(quote: &[u8], collateral: Option<&[u8]>, at: u64, policy: &Policy) -> TdxVerdict {
    tdx::verify(
        &TdxEvidence {
            quote,
            collateral,
            at,
        },
        policy,
    )
}

#[test]
fn tdx_tampered_body_fails_the_quote_signature() {
    let mut quote = vector(QUOTE);
    quote[48 + 136] ^= 1; // MRTD
    let v = tdx_check(
        &quote,
        Some(&vector(COLLATERAL)),
        COLLATERAL_TIME,
        &Policy::default(),
    );
    assert!(!v.quote_signature_valid && !v.signature_valid && !v.accepted);
    assert!(v.qe_report_signature_valid && v.chain_valid);
    assert!(
        has_reason(&v.reasons, "quote signature: invalid"),
        "{:?}",
        v.reasons
    );
}

/// Offset of the QE report in a v4 quote: header, body, signature length, quote signature,
/// attestation key, certification data type and size.
const QE_REPORT_AT: usize = 48 + 584 + 4 + 64 + 64 + 2 + 4;

#[test]
fn tdx_tampered_qe_report_or_key_binding_is_refused() {
    let mut quote = vector(QUOTE);
    quote[QE_REPORT_AT + 64] ^= 1; // QE MRENCLAVE
    let v = tdx_check(&quote, None, COLLATERAL_TIME, &Policy::default());
    assert!(!v.qe_report_signature_valid && v.qe_report_binds_attestation_key && !v.accepted);
    assert!(
        has_reason(&v.reasons, "QE report signature"),
        "{:?}",
        v.reasons
    );

    // Another attestation key: the quote signature and the QE binding both fail.
    let mut quote = vector(QUOTE);
    quote[48 + 584 + 4 + 64] ^= 1;
    let v = tdx_check(&quote, None, COLLATERAL_TIME, &Policy::default());
    assert!(!v.qe_report_binds_attestation_key && !v.quote_signature_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "QE report does not bind"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn tdx_collateral_outside_its_window_or_for_another_platform_is_refused() {
    let quote = vector(QUOTE);
    let v = tdx_check(
        &quote,
        Some(&vector(COLLATERAL)),
        1_900_000_000,
        &Policy::default(),
    );
    assert_eq!(v.tcb_status, "Unknown");
    assert!(
        !v.accepted && has_reason(&v.reasons, "collateral: "),
        "{:?}",
        v.reasons
    );

    let v = tdx_check(
        &quote,
        Some(&vector(OUTDATED_COLLATERAL)),
        1_771_977_600,
        &Policy::default(),
    );
    assert_eq!(v.tcb_status, "Unknown");
    assert!(
        !v.accepted && v.reasons.iter().any(|r| r.contains("Fmspc mismatch")),
        "{:?}",
        v.reasons
    );

    let v = tdx_check(&quote, Some(b"{}"), COLLATERAL_TIME, &Policy::default());
    assert!(
        has_reason(&v.reasons, "collateral: not a collateral JSON object"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn tdx_policy_mismatches_each_give_a_reason() {
    let quote = vector(QUOTE);
    let zeros48 = "00".repeat(48);
    let policy = Policy::from_json(
        format!(
            r#"{{"mr_td": ["{zeros48}"], "rtmr": [null, "{zeros48}"], "mr_config_id": "{}",
                "xfam": "0000000000000000", "report_data": "{}", "tdx_tcb_statuses": ["OutOfDate"]}}"#,
            "11".repeat(48),
            "22".repeat(64)
        )
        .as_bytes(),
    )
    .unwrap();
    let v = tdx_check(&quote, Some(&vector(COLLATERAL)), COLLATERAL_TIME, &policy);
    assert!(v.signature_valid && v.chain_valid && !v.accepted);
    for prefix in [
        "MRTD ",
        "RTMR1 ",
        "MRCONFIGID ",
        "XFAM ",
        "REPORT_DATA ",
        "TCB status UpToDate",
    ] {
        assert!(has_reason(&v.reasons, prefix), "{prefix}: {:?}", v.reasons);
    }
    assert_eq!(v.reasons.len(), 6, "{:?}", v.reasons);

    let case = &common::expected()["tdx"][0];
    let policy = Policy::from_json(
        format!(
            r#"{{"mr_td": ["{}"], "rtmr": ["{}", null, null, "{}"], "xfam": "{}", "mr_config_id": "{}"}}"#,
            case["mr_td"].as_str().unwrap(),
            case["rtmr0"].as_str().unwrap(),
            case["rtmr3"].as_str().unwrap(),
            case["xfam"].as_str().unwrap(),
            case["mr_config_id"].as_str().unwrap(),
        )
        .as_bytes(),
    )
    .unwrap();
    let v = tdx_check(&quote, Some(&vector(COLLATERAL)), COLLATERAL_TIME, &policy);
    assert!(v.accepted, "{:?}", v.reasons);
}

#[test]
fn tdx_debug_td_is_refused_unless_allowed() {
    let quote = vector("tdx/trustee/deps_verifier_test_data_tdx_quote_4.dat");
    let v = tdx_check(&quote, None, 1_771_977_600, &Policy::default());
    assert_eq!(v.debug, Some(true));
    assert!(has_reason(&v.reasons, "debug TD"), "{:?}", v.reasons);
    let allow = Policy::from_json(br#"{"allow_debug": true}"#).unwrap();
    let v = tdx_check(&quote, None, 1_771_977_600, &allow);
    assert!(!has_reason(&v.reasons, "debug TD"), "{:?}", v.reasons);
}

#[test]
fn tdx_malformed_quotes_are_refused_with_the_parse_error() {
    let quote = vector(QUOTE);
    let v = tdx_check(&quote[..700], None, COLLATERAL_TIME, &Policy::default());
    assert!(
        !v.accepted && has_reason(&v.reasons, "quote: TDX quote is truncated"),
        "{:?}",
        v.reasons
    );
    let mut trailing = quote.clone();
    trailing.push(7);
    let v = tdx_check(&trailing, None, COLLATERAL_TIME, &Policy::default());
    assert!(
        has_reason(&v.reasons, "quote: 71 unexpected bytes"),
        "{:?}",
        v.reasons
    );
    let mut sgx = quote.clone();
    sgx[4] = 0;
    let v = tdx_check(&sgx, None, COLLATERAL_TIME, &Policy::default());
    assert!(
        has_reason(&v.reasons, "quote: unsupported quote TEE type"),
        "{:?}",
        v.reasons
    );
}

#[test]
fn tdx_pck_chain_is_checked_at_the_given_time() {
    let quote = vector(QUOTE);
    // Before Intel's root CA was issued (2018).
    let v = tdx_check(&quote, None, 1_000_000_000, &Policy::default());
    assert!(!v.chain_valid && !v.accepted);
    assert!(
        has_reason(&v.reasons, "PCK certificate chain: "),
        "{:?}",
        v.reasons
    );
    assert!(
        v.qe_report_signature_valid,
        "the PCK key still verifies the QE report"
    );
}
