//! The SEV-SNP and TDX launch profiles (`qemu/snp.sh`, `qemu/tdx.sh`) cannot run here (no
//! confidential hardware, QEMU 7.2), so this checks what can be checked without hardware: they are
//! valid shell, they bind the deployment configuration the way the enclave and the verifier
//! expect (HOST_DATA = SHA-256, MRCONFIGID = SHA-384, as computed by this crate), and they refuse
//! a QEMU too old to launch such guests instead of starting a plain VM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use ward_attestation::measure::config::{host_data, mr_config_id};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn profile(name: &str) -> PathBuf {
    workspace().join("qemu").join(name)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ward-profiles-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CONFIG: &[u8] = b"min_model_version = 3\n\
key_release_public_key = \"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a\"\n\
slots = 4\n";

fn dry_run(name: &str, scratch: &Scratch) -> Vec<String> {
    let image = scratch.file("ward.img", &[0; 4096]);
    let config = scratch.file("ward,with comma.conf", CONFIG);
    let output = Command::new("bash")
        .arg(profile(name))
        .arg(&image)
        .arg(&config)
        .env("DRY_RUN", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let args: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // A comma in a path must be doubled, or QEMU would read the rest as another option.
    assert!(
        args.iter().any(|a| a.ends_with("ward,,with comma.conf")),
        "{args:?}"
    );
    args
}

#[test]
fn profiles_are_valid_shell() {
    for name in ["snp.sh", "tdx.sh", "native.sh", "confidential-common.sh"] {
        let status = Command::new("bash")
            .arg("-n")
            .arg(profile(name))
            .status()
            .unwrap();
        assert!(status.success(), "bash -n {name}");
    }
}

#[test]
fn snp_profile_sets_host_data_to_the_config_sha256() {
    let scratch = Scratch::new("snp");
    let args = dry_run("snp.sh", &scratch);
    let object = args
        .iter()
        .find(|a| a.starts_with("sev-snp-guest,"))
        .expect("sev-snp-guest object");
    let expected = format!("host-data={}", base64(&host_data(CONFIG)));
    assert!(
        object.split(',').any(|field| field == expected),
        "{object} lacks {expected}"
    );
    assert!(
        object.split(',').any(|field| field == "policy=0x30000"),
        "no debug bit: {object}"
    );
    let machine = args.iter().find(|a| a.starts_with("q35,")).unwrap();
    assert!(machine.contains("confidential-guest-support=sev0"));
    assert!(args.windows(2).any(|w| w[0] == "-bios"));
}

#[test]
fn tdx_profile_sets_mrconfigid_to_the_config_sha384() {
    let scratch = Scratch::new("tdx");
    let args = dry_run("tdx.sh", &scratch);
    let object = args
        .iter()
        .find(|a| a.contains("\"tdx-guest\""))
        .expect("tdx-guest object");
    let object: serde_json::Value = serde_json::from_str(object).unwrap();
    assert_eq!(object["mrconfigid"], base64(&mr_config_id(CONFIG)).as_str());
    assert_eq!(object["sept-ve-disable"], true);
    assert_eq!(object["quote-generation-socket"]["type"], "unix");
    let machine = args.iter().find(|a| a.starts_with("q35,")).unwrap();
    assert!(machine.contains("confidential-guest-support=tdx0"));
    assert!(machine.contains("kernel-irqchip=split"));
}

fn run_with_fake_qemu(name: &str, version: &str, scratch: &Scratch) -> Output {
    let fake = scratch.file(
        "qemu",
        format!("#!/bin/sh\necho 'QEMU emulator version {version}'\n").as_bytes(),
    );
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let image = scratch.file("ward.img", &[0; 4096]);
    let config = scratch.file("ward.conf", CONFIG);
    Command::new("bash")
        .arg(profile(name))
        .arg(&image)
        .arg(&config)
        .env("QEMU", &fake)
        .output()
        .unwrap()
}

#[test]
fn profiles_refuse_a_qemu_that_cannot_launch_the_guest() {
    let scratch = Scratch::new("old-qemu");
    for (name, version, needs) in [
        ("snp.sh", "9.0.2", "9.1"),
        ("tdx.sh", "10.0.2", "10.1"),
        ("tdx.sh", "7.2.22", "10.1"),
    ] {
        let output = run_with_fake_qemu(name, version, &scratch);
        assert_eq!(output.status.code(), Some(2), "{name} with QEMU {version}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("need QEMU >= {needs}")),
            "{stderr}"
        );
    }
    // A new enough "QEMU" is executed (here the fake one, which just prints its version).
    let output = run_with_fake_qemu("snp.sh", "10.0.2", &scratch);
    assert!(output.status.success());
    let missing = Command::new("bash")
        .arg(profile("snp.sh"))
        .arg("/nonexistent.img")
        .arg("/nonexistent.conf")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
