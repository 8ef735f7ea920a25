//! The launcher's clean-up: a guest that never exits is stopped on timeout and on cancel
//! (Ctrl-C), and the vsock daemon and its sockets go with it. Uses a generated 64 KiB firmware
//! whose reset vector spins forever, so it needs no Ward image.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use ward_tests::{Outcome, TempDir};
use ward_tools::qemu::{RunningVm, SerialSink, VmConfig};

/// 64 KiB of `hlt` with `jmp $` (EB FE) at the reset vector (4 GiB − 16).
fn spinning_firmware(dir: &TempDir) -> std::path::PathBuf {
    let mut image = vec![0xf4u8; 64 << 10];
    image[0xfff0] = 0xeb;
    image[0xfff1] = 0xfe;
    let path = dir.path().join("spin.img");
    std::fs::write(&path, image).unwrap();
    path
}

/// Whether any process has `needle` in its command line.
fn process_mentions(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
    })
}

fn spinning_vm(dir: &TempDir, vsock_dir: &Path) -> VmConfig {
    let mut config = VmConfig::new(spinning_firmware(dir));
    config.memory_mib = 64;
    config.accel = ward_tests::accel();
    config.vsock = true;
    config.vsock_dir = Some(vsock_dir.to_path_buf());
    config
}

#[test]
fn timeout_stops_qemu_then_daemon_and_removes_sockets() {
    let dir = TempDir::new("timeout");
    let vsock_dir = dir.path().join("vsock");
    let vm = RunningVm::launch(&spinning_vm(&dir, &vsock_dir), SerialSink::Discard).unwrap();
    let uds = vm.uds_path().unwrap().to_path_buf();
    assert!(vsock_dir.join("vhost.sock").exists());
    assert!(
        process_mentions(&vsock_dir.display().to_string()),
        "daemon running"
    );
    let report = vm.wait(Some(Duration::from_millis(500)), &AtomicBool::new(false));
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(report.outcome.exit_status(), 124);
    assert!(
        !vsock_dir.join("vhost.sock").exists() && !uds.exists(),
        "sockets removed"
    );
    assert!(
        !process_mentions(&vsock_dir.display().to_string()),
        "daemon stopped"
    );
}

#[test]
fn cancel_flag_stops_everything_and_owned_directory_goes() {
    let dir = TempDir::new("cancel");
    let mut config = spinning_vm(&dir, dir.path());
    config.vsock_dir = None;
    let vm = RunningVm::launch(&config, SerialSink::Discard).unwrap();
    let runtime_dir = vm.uds_path().unwrap().parent().unwrap().to_path_buf();
    assert!(runtime_dir.exists());
    let cancel = Arc::new(AtomicBool::new(false));
    let setter = Arc::clone(&cancel);
    let started = Instant::now();
    let trigger = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        setter.store(true, Ordering::SeqCst);
    });
    let report = vm.wait(Some(Duration::from_secs(60)), &cancel);
    trigger.join().unwrap();
    assert_eq!(report.outcome, Outcome::Interrupted);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!runtime_dir.exists(), "runtime directory removed");
    assert!(
        !process_mentions(&runtime_dir.display().to_string()),
        "no process left"
    );
}

#[test]
fn dropping_a_running_vm_cleans_up() {
    let dir = TempDir::new("drop");
    let vsock_dir = dir.path().join("vsock");
    let vm = RunningVm::launch(&spinning_vm(&dir, &vsock_dir), SerialSink::Discard).unwrap();
    drop(vm);
    assert!(!vsock_dir.join("vhost.sock").exists());
    assert!(!process_mentions(&vsock_dir.display().to_string()));
}
