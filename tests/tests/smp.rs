//! SMP boot tests: with `-smp 2` the kernel starts the second CPU, reports `cpus=2`, and its
//! self-test (`test_smp`) splits a sum across both CPUs and matches the serial sum; with one
//! CPU the self-test runs on that one.
//!
//! Needs the image: `cargo run --release -p ward-tools -- build` (or WARD_IMAGE).

use ward_tests::{KernelExit, Outcome, TempDir, boot, dev_config, vm_config, write_config};

fn boot_with_self_test(cpus: u32) -> ward_tools::qemu::RunReport {
    let dir = TempDir::new("smp");
    let mut config = dev_config(None);
    config.test_smp = true;
    let mut vm = vm_config();
    vm.cpus = cpus;
    vm.config = Some(write_config(&dir, &config.to_string()));
    boot(&vm)
}

fn self_test_cpus(report: &ward_tools::qemu::RunReport) -> Vec<u32> {
    let line = report
        .line_containing("SMP self-test: ")
        .expect("self-test line");
    let ids = line
        .text
        .split("(APIC IDs [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("APIC IDs in the self-test line");
    ids.split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("APIC ID"))
        .collect()
}

#[test]
fn two_cpus_start_and_share_the_self_test() {
    let report = boot_with_self_test(2);
    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Success),
        "{}",
        report.outcome
    );
    let banner = report.line_containing("Ward kernel ").expect("banner");
    assert!(banner.text.contains(" cpus=2 "), "{}", banner.text);
    let started = report
        .line_containing("SMP: 2 CPUs started")
        .expect("start-up line");
    assert!(started.text.contains("APIC IDs [0, 1]"), "{}", started.text);
    assert_eq!(self_test_cpus(&report), [0, 1]);
    let text = report.serial_text();
    assert!(
        text.contains("SMP self-test passed"),
        "self-test did not pass"
    );
    let line = report.line_containing("SMP self-test: ").unwrap();
    let sums: Vec<&str> = line
        .text
        .split(" sum ")
        .skip(1)
        .map(|s| s.split(' ').next().unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{}", line.text);
    assert_eq!(sums[0], sums[1], "serial and parallel sums differ");
}

#[test]
fn one_cpu_runs_the_self_test_alone() {
    let report = boot_with_self_test(1);
    assert_eq!(
        report.outcome,
        Outcome::Kernel(KernelExit::Success),
        "{}",
        report.outcome
    );
    let banner = report.line_containing("Ward kernel ").expect("banner");
    assert!(banner.text.contains(" cpus=1 "), "{}", banner.text);
    assert_eq!(self_test_cpus(&report), [0]);
    assert!(report.serial_text().contains("SMP self-test passed"));
}
