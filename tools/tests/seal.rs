//! `ward seal` end to end on a small generated GGUF-shaped file: the image unseals with the key
//! it wrote, the key file is private and never printed, and nothing is overwritten silently.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use ward_attestation::sealed::{ModelKey, SealedHeader, Unsealer};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ward-seal-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fake_gguf(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((4..len).map(|i| (i * 7 % 253) as u8));
    let path = dir.join("tiny-model.gguf");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn seal(dir: &Path, gguf: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("seal")
        .arg("--gguf")
        .arg(gguf)
        .arg("--out")
        .arg(dir.join("disk.img"))
        .arg("--key-out")
        .arg(dir.join("model.key"))
        .args(["--model-version", "7", "--chunk-size", "4096"])
        .args(extra)
        .output()
        .unwrap()
}

fn unseal(image: &[u8], key: &ModelKey, min_version: u64) -> Result<Vec<u8>, String> {
    let mut u = Unsealer::new(key, image, min_version).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(loc) = u.next_chunk() {
        let mut chunk = image[loc.offset as usize..loc.offset as usize + loc.len].to_vec();
        let n = u
            .open_chunk_in_place(&mut chunk)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&chunk[..n]);
    }
    u.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn seal_writes_an_image_that_unseals_with_the_private_key_file() {
    let dir = scratch("roundtrip");
    let (gguf, plain) = fake_gguf(&dir, 3 * 4080 + 123);
    let out = seal(&dir, &gguf, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();

    let key_path = dir.join("model.key");
    let key_bytes: [u8; 32] = std::fs::read(&key_path).unwrap().try_into().unwrap();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !stdout.contains(&hex::encode(key_bytes)),
        "the key was printed"
    );

    let image = std::fs::read(dir.join("disk.img")).unwrap();
    assert_eq!(image.len() % 512, 0);
    let header = SealedHeader::parse(&image).unwrap();
    assert_eq!(header.model_id.as_str(), "tiny-model");
    assert_eq!(header.model_version, 7);
    assert!(stdout.contains(&hex::encode(header.plaintext_sha384)));
    assert!(stdout.contains("model version:    7"));

    let key = ModelKey::from_bytes(key_bytes);
    assert_eq!(unseal(&image, &key, 7).unwrap(), plain);
    assert!(
        unseal(&image, &key, 8)
            .unwrap_err()
            .contains("below the minimum")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seal_refuses_to_overwrite_without_force() {
    let dir = scratch("overwrite");
    let (gguf, _) = fake_gguf(&dir, 5000);
    assert!(seal(&dir, &gguf, &[]).status.success());
    let first_key = std::fs::read(dir.join("model.key")).unwrap();

    let again = seal(&dir, &gguf, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(dir.join("model.key")).unwrap(), first_key);

    std::fs::set_permissions(
        dir.join("model.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let forced = seal(&dir, &gguf, &["--force", "--model-id", "renamed"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read(dir.join("model.key")).unwrap(), first_key);
    let mode = std::fs::metadata(dir.join("model.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let header = SealedHeader::parse(&std::fs::read(dir.join("disk.img")).unwrap()).unwrap();
    assert_eq!(header.model_id.as_str(), "renamed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seal_refuses_a_file_that_is_not_gguf() {
    let dir = scratch("notgguf");
    let path = dir.join("x.gguf");
    std::fs::write(&path, b"not a model").unwrap();
    let out = seal(&dir, &path, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GGUF file"));
    assert!(!dir.join("model.key").exists() && !dir.join("disk.img").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
