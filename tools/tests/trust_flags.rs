//! `ward chat` and `ward release-key` take the relying party's hardware-evidence inputs
//! (`--vcek`, `--chain`, `--collateral`) and read them before connecting, so a wrong path is a
//! clear error rather than a refused report later.

use std::process::{Command, Output};

fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .expect("running ward")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const NOWHERE: &str = "unix:///nonexistent/ward-trust-flags.sock:5000";

#[test]
fn chat_reads_the_vcek_before_connecting() {
    let output = ward(&[
        "chat",
        "--connect",
        NOWHERE,
        "--vcek",
        "/nonexistent/vcek.der",
        "hello",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("reading the VCEK /nonexistent/vcek.der"),
        "{text}"
    );
}

#[test]
fn release_key_reads_chain_and_collateral_before_connecting() {
    let vcek = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for (flag, what) in [
        ("--chain", "reading the certificate chain"),
        ("--collateral", "reading the TDX collateral"),
    ] {
        let output = ward(&[
            "release-key",
            "--connect",
            NOWHERE,
            "--key",
            "/nonexistent/model.key",
            "--sender-key",
            "/nonexistent/release.key",
            "--vcek",
            vcek,
            flag,
            "/nonexistent/file",
        ]);
        assert!(!output.status.success());
        let text = stderr(&output);
        assert!(text.contains(what), "{flag}: {text}");
    }
}

#[test]
fn with_readable_files_the_error_is_the_connection() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = ward(&[
        "chat",
        "--connect",
        NOWHERE,
        "--vcek",
        file,
        "--chain",
        file,
        "--collateral",
        file,
        "hello",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("cannot connect"), "{text}");
}
