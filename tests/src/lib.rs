//! Harness for the tests that boot Ward under QEMU (`tests/tests/*.rs`): finds the image, writes
//! deployment configurations, boots through the same launcher as `ward run`
//! (`ward_tools::qemu`), and returns the captured serial lines (each with its time since QEMU
//! started) and the decoded exit.
//!
//! Boots are serialised within a test binary: parallel TCG guests on a 2-core machine would
//! distort the timing figures the tests check.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use ward_attestation::config::{Config, TestFault};
use ward_tools::qemu::{Accel, RunReport, RunningVm, SerialSink, VmConfig};

pub use ward_tools::qemu::{KernelExit, Outcome, SerialLine};

/// The start of the kernel's banner line.
pub const BANNER: &str = "Ward kernel ";
/// The public key from RFC 7748 §6.1: a published test value for development configurations.
pub const DEV_KEY_RELEASE_PUBLIC_KEY: [u8; 32] = [
    0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
    0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
];
/// Longest a boot test waits for QEMU.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

static BOOT_LOCK: Mutex<()> = Mutex::new(());

pub mod enclave;

/// Holds the boot lock: one guest at a time within a test binary.
pub fn serialise_boots() -> std::sync::MutexGuard<'static, ()> {
    BOOT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A file `ward build` makes: `$variable`, else `default` under the workspace root. Panics with
/// the build command when it is missing.
pub fn built_file(variable: &str, default: &str) -> PathBuf {
    let path =
        std::env::var_os(variable).map_or_else(|| workspace_root().join(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} does not exist: build it first with `cargo run --release -p ward-tools -- build` (or set {variable})",
        path.display()
    );
    path
}

/// The image to boot: `$WARD_IMAGE`, else `target/ward/ward.img`.
pub fn image() -> PathBuf {
    built_file("WARD_IMAGE", "target/ward/ward.img")
}

/// The accelerator: `$WARD_ACCEL` (`kvm` or `tcg`), else TCG.
pub fn accel() -> Accel {
    match std::env::var("WARD_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("ward-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary directory");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A development configuration (RFC 7748 test key) for boot tests: the kernel reports its boot
/// and exits instead of serving (`test_boot_only`), with `test_fault` if given.
pub fn dev_config(test_fault: Option<TestFault>) -> Config {
    let mut config = Config::new(1, DEV_KEY_RELEASE_PUBLIC_KEY);
    config.test_fault = test_fault;
    config.test_boot_only = true;
    config
}

/// Writes `text` as a configuration file in `dir`.
pub fn write_config(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("ward.conf");
    std::fs::write(&path, text).expect("write configuration");
    path
}

/// A VM configuration for the test image: 512 MiB, one CPU, [`accel`].
pub fn vm_config() -> VmConfig {
    let mut config = VmConfig::new(image());
    config.memory_mib = 512;
    config.accel = accel();
    config
}

/// Boots `config` to the end (or [`BOOT_TIMEOUT`]) and returns the report; echoes the serial
/// output so a failing test shows it.
pub fn boot(config: &VmConfig) -> RunReport {
    let _serialised = serialise_boots();
    let vm = RunningVm::launch(config, SerialSink::Discard).expect("launch QEMU");
    let report = vm.wait(Some(BOOT_TIMEOUT), &AtomicBool::new(false));
    eprintln!(
        "---- serial ----\n{}---- {} after {:?}",
        report.serial_text(),
        report.outcome,
        report.elapsed
    );
    if !report.stderr.is_empty() {
        eprintln!("---- QEMU stderr ----\n{}", report.stderr);
    }
    report
}

/// Time from QEMU's start to the kernel banner.
pub fn banner_time(report: &RunReport) -> Option<Duration> {
    report.line_containing(BANNER).map(|line| line.at)
}
