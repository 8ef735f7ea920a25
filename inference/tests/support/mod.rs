//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod gguf_writer;

use std::path::PathBuf;
use std::process::Command;

/// The default model: its bytes parsed and built with the best kernels of this CPU.
pub fn default_model() -> ward_inference::model::Model {
    let bytes = std::fs::read(default_model_path()).expect("read the default model");
    let gguf = ward_inference::gguf::Gguf::parse(&bytes).expect("the default model parses");
    ward_inference::model::Model::from_gguf(&gguf, ward_inference::kernels::Kernels::detect())
        .expect("the default model builds")
}

/// llama.cpp's reference token ids and outputs (`testdata/llama-cpp-reference/`).
pub fn llama_cpp_reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/llama-cpp-reference/llama_cpp_reference.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("read the reference json"))
        .expect("the reference file is JSON")
}

/// A JSON array of token ids.
pub fn token_ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|id| u32::try_from(id.as_u64().expect("an id")).expect("id fits u32"))
        .collect()
}

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
