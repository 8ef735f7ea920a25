//! Boot tests: the image boots under QEMU (TCG unless WARD_ACCEL=kvm), reports what it found and
//! exits cleanly; deliberate faults are reported and end in failure exits.
//!
//! Needs the image: `cargo run --release -p ward-tools -- build` (or WARD_IMAGE).

use std::time::Duration;
use ward_attestation::config::TestFault;
use ward_kernel::arch::paging::layout::Stack;
use ward_tests::{
    KernelExit, Outcome, TempDir, banner_time, boot, dev_config, vm_config, write_config,
};

#[test]
fn boots_reports_memory_simd_and_virtio_devices() {
    let dir = TempDir::new("boot");
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let mut config = vm_config();
    config.config = Some(write_config(&dir, &dev_config(None).to_string()));
    config.disk = Some(disk);
    config.vsock = true;
    let report = boot(&config);

    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Success),
        "{}",
        report.outcome
    );
    let banner = report.line_containing("Ward kernel ").expect("banner");
    assert!(
        banner.text.contains(&format!(
            "Ward kernel {} booted: platform=native cpus=1 memory=",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        banner.text
    );
    let banner_at = banner_time(&report).unwrap();
    println!(
        "boot to banner: {:.1} ms (QEMU start to the banner line, {:?})",
        banner_at.as_secs_f64() * 1e3,
        ward_tests::accel()
    );
    assert!(
        banner_at < Duration::from_secs(1),
        "boot to banner took {banner_at:?}"
    );

    let text = report.serial_text();
    assert!(text.contains("memory map: "), "no memory map");
    assert!(
        text.lines()
            .any(|l| l.contains(") ") && l.trim_end().ends_with("usable")),
        "no usable region listed"
    );
    assert!(
        text.lines().any(|l| l.trim_end().ends_with("kernel image")),
        "kernel image region missing"
    );
    let simd = report
        .line_containing("SIMD level: ")
        .expect("SIMD level line");
    let level = simd
        .text
        .split("SIMD level: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(
        ["avx512-vnni", "avx2-fma", "scalar"].contains(&level),
        "{}",
        simd.text
    );
    if ward_tests::accel() == ward_tools::qemu::Accel::Tcg {
        // QEMU 7.2's TCG `-cpu max` has AVX2 and FMA but no AVX-512.
        assert_eq!(level, "avx2-fma");
    }
    let paging = report
        .line_containing("paging: W^X checked")
        .expect("page-table audit line");
    assert!(
        paging.text.contains("none writable and executable"),
        "{}",
        paging.text
    );
    let blk = report
        .line_containing("1af4:1042")
        .expect("virtio-blk listed");
    assert!(blk.text.contains("virtio-blk (modern)"), "{}", blk.text);
    let vsock = report
        .line_containing("1af4:1053")
        .expect("virtio-vsock listed");
    assert!(
        vsock.text.contains("virtio-vsock (modern)"),
        "{}",
        vsock.text
    );
    assert!(text.contains("8086:29c0 class 06.00 host bridge"));
    assert!(text.contains("config: min_model_version=1 slots=8 queue=16 cadence_ms=50 sha256="));
}

#[test]
fn without_devices_no_virtio_and_no_config() {
    let report = boot(&vm_config());
    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Success),
        "{}",
        report.outcome
    );
    let text = report.serial_text();
    assert!(
        text.contains("PCI: 4 functions"),
        "q35 with -nodefaults has 4 functions"
    );
    assert!(!text.contains("1af4:"), "no virtio device was attached");
    assert!(text.contains("no deployment configuration"));
}

#[test]
fn guard_page_touch_is_reported_from_the_page_fault_stack() {
    let dir = TempDir::new("guard");
    let mut config = vm_config();
    config.config = Some(write_config(
        &dir,
        &dev_config(Some(TestFault::GuardPage)).to_string(),
    ));
    let report = boot(&config);

    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Exception),
        "{}",
        report.outcome
    );
    assert_eq!(report.outcome.exit_status(), 37);
    let text = report.serial_text();
    assert!(
        text.contains("CPU EXCEPTION: vector 14 (#PF page fault)"),
        "no #PF report"
    );
    assert!(
        text.contains("handled on the page-fault IST stack"),
        "not on the #PF IST stack"
    );
    assert!(text.contains("cr2 is in the guard page below the kernel stack"));
    let cr2_line = report.line_containing(" cr2 0x").expect("cr2 printed");
    let cr2 = cr2_line
        .text
        .split(" cr2 0x")
        .nth(1)
        .map(str::trim)
        .unwrap();
    let cr2 = u64::from_str_radix(cr2, 16).unwrap();
    let bottom = Stack::Kernel.bottom().as_u64();
    assert!(
        (bottom - 4096..bottom).contains(&cr2),
        "cr2 {cr2:#x} is not in the page below {bottom:#x}"
    );
    assert!(
        report.line_containing("rip 0xffffffff8").is_some(),
        "rip in kernel text"
    );
}

#[test]
fn panic_is_reported_with_its_location() {
    let dir = TempDir::new("panic");
    let mut config = vm_config();
    config.config = Some(write_config(
        &dir,
        &dev_config(Some(TestFault::Panic)).to_string(),
    ));
    let report = boot(&config);

    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Panic),
        "{}",
        report.outcome
    );
    assert_eq!(report.outcome.exit_status(), 35);
    let panic = report
        .line_containing("KERNEL PANIC at ")
        .expect("panic report");
    // `file:line:column: message`
    let location = panic.text.split("KERNEL PANIC at ").nth(1).unwrap();
    let mut parts = location.splitn(4, ':');
    assert_eq!(parts.next(), Some("kernel/src/boot/fault_test.rs"));
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{location}");
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{location}");
    assert!(
        parts.next().unwrap().contains("deliberate panic"),
        "{location}"
    );
}

#[test]
fn malformed_configuration_is_refused() {
    let dir = TempDir::new("badconfig");
    let mut config = vm_config();
    let text = format!("{}colour = \"blue\"\n", dev_config(None));
    config.config = Some(write_config(&dir, &text));
    let report = boot(&config);

    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::BadConfig),
        "{}",
        report.outcome
    );
    let bad_line = text.lines().count();
    assert!(report.serial_text().contains(&format!(
        "refusing the deployment configuration: line {bad_line}: unknown key"
    )));
    assert!(report.line_containing("boot complete").is_none());
}
