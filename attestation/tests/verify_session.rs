//! The session seam: `HardwareVerifier` binds real evidence to the handshake (REPORT_DATA) and
//! to the deployment configuration (HOST_DATA / MRCONFIGID), with the most specific reason.
//! The vectors' evidence carries all-zero HOST_DATA / MRCONFIGID, which no configuration file
//! hashes to, so a real vector can never be accepted for a session: that refusal is the test.

mod common;

use common::{expected, vector};
use ward_attestation::protocol::evidence::{
    Binding, Evidence, EvidenceKind, EvidenceRejected, EvidenceVerifier,
};
use ward_attestation::verify::{HardwareVerifier, Policy};

fn report_data(hex: &str) -> [u8; 64] {
    let bytes = ward_attestation::evidence::encoding::decode_hex(hex.as_bytes()).unwrap();
    bytes.try_into().unwrap()
}

fn snp_verifier(policy: Policy) -> HardwareVerifier {
    HardwareVerifier {
        policy,
        snp_vek: Some(vector("snp/oak/genoa_oc_vcek.der")),
        snp_chain: None,
        tdx_collateral: Some(vector("tdx/dcap-qvl/sample_tdx_quote_collateral.json")),
        at: 1_750_809_600,
    }
}

#[test]
fn snp_evidence_is_bound_to_the_handshake_and_the_configuration() {
    let genoa = &expected()["snp"][4];
    let good = report_data(genoa["report_data"].as_str().unwrap());
    let evidence = Evidence {
        kind: EvidenceKind::SevSnp,
        bytes: vector("snp/oak/genoa_oc_report.bin"),
    };
    let verifier = snp_verifier(Policy::default());
    let config = b"min_model_version = 1\n";

    let wrong = [0x55u8; 64];
    let result = verifier.verify(
        &evidence,
        &Binding {
            report_data: &wrong,
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::ReportDataMismatch));
    let result = verifier.verify(
        &evidence,
        &Binding {
            report_data: &good,
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::ConfigMismatch));

    let mut tampered = evidence.clone();
    tampered.bytes[0x90] ^= 1;
    let result = verifier.verify(
        &tampered,
        &Binding {
            report_data: &good,
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::BadSignature));

    let truncated = Evidence {
        kind: EvidenceKind::SevSnp,
        bytes: vec![2, 0, 0, 0],
    };
    let result = verifier.verify(
        &truncated,
        &Binding {
            report_data: &good,
            config,
        },
    );
    assert!(matches!(result, Err(EvidenceRejected::Policy(why)) if why.contains("truncated")));
}

#[test]
fn tdx_evidence_is_bound_to_the_handshake_and_the_configuration() {
    let case = &expected()["tdx"][0];
    let good = report_data(case["report_data"].as_str().unwrap());
    let evidence = Evidence {
        kind: EvidenceKind::Tdx,
        bytes: vector("tdx/dcap-qvl/sample_tdx_quote"),
    };
    let verifier = snp_verifier(Policy::default());
    let config = b"min_model_version = 1\n";
    let result = verifier.verify(
        &evidence,
        &Binding {
            report_data: &[0; 64],
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::ReportDataMismatch));
    let result = verifier.verify(
        &evidence,
        &Binding {
            report_data: &good,
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::ConfigMismatch));

    let simulated = Evidence {
        kind: EvidenceKind::Simulated,
        bytes: Vec::new(),
    };
    let result = verifier.verify(
        &simulated,
        &Binding {
            report_data: &good,
            config,
        },
    );
    assert_eq!(result, Err(EvidenceRejected::SimulatedNotAllowed));
}
