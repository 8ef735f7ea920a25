//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod gguf_writer;

use std::path::PathBuf;
use std::process::Command;

/// Path of the default model: `WARD_MODEL`, else what `scripts/fetch-model.sh` prints (it
/// downloads the model into the cache when missing).
pub fn default_model_path() -> PathBuf {
    if let Ok(path) = std::env::var("WARD_MODEL") {
        return PathBuf::from(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-model.sh");
    let output = Command::new("bash")
        .arg(script)
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        output.status.success(),
        "fetch-model.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 path");
    PathBuf::from(stdout.lines().last().expect("a path line").trim())
}
