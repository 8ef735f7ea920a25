//! `ward verify` and `ward measure` as users run them: the binary, its JSON and its exit status,
//! on the attestation vectors kept in `attestation/testdata/vectors`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn vector(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/testdata/vectors")
        .join(relative)
}

fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .expect("run ward")
}

fn json(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

fn path(relative: &str) -> String {
    vector(relative).to_str().unwrap().to_string()
}

#[test]
fn verify_snp_accepts_a_valid_hex_report() {
    let output = ward(&[
        "verify",
        "snp",
        "--report",
        &path("snp/virtee-sev/tests_certs_data_report_milan.hex"),
        "--vcek",
        &path("snp/virtee-sev/tests_certs_data_vcek_milan.der"),
        "--chain",
        &path("snp/go-sev-guest/verify_trust_ask_ark_milan.pem"),
        "--json",
    ]);
    let v = json(&output);
    assert_eq!(output.status.code(), Some(0), "{v}");
    assert_eq!(v["signature_valid"], true);
    assert_eq!(v["chain_valid"], true);
    assert_eq!(v["debug"], false);
    assert_eq!(v["accepted"], true);
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(
        v["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        &v["report_data"].as_str().unwrap()[..16],
        "d447b55d197491bf"
    );
}

#[test]
fn verify_snp_refuses_a_debug_guest_with_exit_status_1() {
    let output = ward(&[
        "verify",
        "snp",
        "--report",
        &path("snp/go-sev-guest/verify_testdata_attestation.bin"),
        "--vcek",
        &path("snp/go-sev-guest/verify_testdata_vcek.testcer"),
        "--json",
    ]);
    let v = json(&output);
    assert_eq!(output.status.code(), Some(1), "{v}");
    assert_eq!(v["signature_valid"], true);
    assert_eq!(v["chain_valid"], true);
    assert_eq!(v["debug"], true);
    assert_eq!(v["accepted"], false);
    assert!(
        v["reasons"][0].as_str().unwrap().starts_with("debug guest"),
        "{v}"
    );
}

#[test]
fn verify_tdx_with_collateral_at_a_given_time() {
    let quote = path("tdx/dcap-qvl/sample_tdx_quote");
    let collateral = path("tdx/dcap-qvl/sample_tdx_quote_collateral.json");
    let output = ward(&[
        "verify",
        "tdx",
        "--quote",
        &quote,
        "--collateral",
        &collateral,
        "--at",
        "1750809600",
        "--json",
    ]);
    let v = json(&output);
    assert_eq!(output.status.code(), Some(0), "{v}");
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(v["signature_valid"], true);
    assert_eq!(v["chain_valid"], true);
    assert_eq!(v["debug"], false);
    assert_eq!(
        v["mr_td"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );

    // The same quote under a policy that wants another MRTD: refused, exit 1.
    let dir = std::env::temp_dir().join(format!("ward-verify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, format!(r#"{{"mr_td": ["{}"]}}"#, "ab".repeat(48))).unwrap();
    let output = ward(&[
        "verify",
        "tdx",
        "--quote",
        &quote,
        "--collateral",
        &collateral,
        "--at",
        "1750809600",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    let v = json(&output);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1), "{v}");
    assert_eq!(v["accepted"], false);
    assert!(
        v["reasons"][0].as_str().unwrap().starts_with("MRTD "),
        "{v}"
    );
}

#[test]
fn verify_tdx_hex_quote_without_collateral_is_unknown_and_refused() {
    let output = ward(&[
        "verify",
        "tdx",
        "--quote",
        &path("tdx/dcap-qvl/sample_tdx-quote.hex"),
        "--at",
        "1771977600",
        "--json",
    ]);
    let v = json(&output);
    assert_eq!(output.status.code(), Some(1), "{v}");
    assert_eq!(v["tcb_status"], "Unknown");
    assert_eq!(v["signature_valid"], true);
    assert_eq!(v["chain_valid"], true);
    assert_eq!(v["accepted"], false);
}

#[test]
fn measure_snp_prints_the_digest_on_the_last_line() {
    let output = ward(&[
        "measure",
        "snp",
        "--image",
        &path("measurement/virtee-sev/tests_measurement_ovmf_OvmfX64_suffix.bin"),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--guest-features",
        "0x21",
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.lines().last().unwrap(),
        "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"
    );
}

#[test]
fn measure_config_prints_both_digests_of_the_exact_bytes() {
    use sha2::Digest;
    let config = ward_attestation::config::Config::new(3, [7; 32]).to_string();
    let dir = std::env::temp_dir().join(format!("ward-measure-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ward.conf");
    std::fs::write(&file, &config).unwrap();
    let output = ward(&["measure", "config", "--config", file.to_str().unwrap()]);
    std::fs::write(&file, "not a config\n").unwrap();
    let refused = ward(&["measure", "config", "--config", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success());
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let expected = format!(
        "host_data={}\nmr_config_id={}\n",
        hex(&sha2::Sha256::digest(config.as_bytes())),
        hex(&sha2::Sha384::digest(config.as_bytes()))
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    assert!(!refused.status.success());
}
