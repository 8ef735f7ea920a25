//! Helpers shared by the integration tests: the vector folder and external reference tools.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The copy of the attestation vectors kept in this repository.
pub fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors")
}

pub fn vector(relative: &str) -> Vec<u8> {
    let path = vectors().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn expected() -> serde_json::Value {
    serde_json::from_slice(&vector("EXPECTED.json")).expect("EXPECTED.json is JSON")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `sev-snp-measure --mode snp` (PyPI package `sev-snp-measure`, installed by the project's
/// setup script) and returns the launch digest it prints.
pub fn sev_snp_measure(
    image: &std::path::Path,
    vcpus: u32,
    vcpu_type: &str,
    features: u64,
) -> String {
    let output = Command::new("sev-snp-measure")
        .args(["--mode", "snp", "--ovmf"])
        .arg(image)
        .args(["--vcpus", &vcpus.to_string(), "--vcpu-type", vcpu_type])
        .args(["--guest-features", &format!("{features:#x}")])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run sev-snp-measure ({e}): install it with `pip install sev-snp-measure` \
                 (scripts/setup.sh does)"
            )
        });
    assert!(
        output.status.success(),
        "sev-snp-measure failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A scratch directory for files the reference tools read, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ward-attestation-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
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

/// Ward's own image: the file named by `WARD_IMAGE`, else `target/ward/ward.img` once
/// `ward build` has written it (scripts/test.sh builds it before the tests run). Outside CI a
/// missing image skips the image tests; under CI (`CI` set) it fails them, so they can never
/// pass there without having checked the real image.
pub fn ward_image() -> Option<(PathBuf, Vec<u8>)> {
    let path = std::env::var_os("WARD_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ward/ward.img")
        });
    match std::fs::read(&path) {
        Ok(image) => Some((path, image)),
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} cannot be read under CI ({error}): scripts/test.sh runs `ward build` first",
                path.display()
            );
            eprintln!(
                "skipped: {} not built yet (run `ward build` or set WARD_IMAGE)",
                path.display()
            );
            None
        }
    }
}
