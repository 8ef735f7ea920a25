//! `ward run`: boots a Ward image under QEMU (see `ward_tools::qemu` and `qemu/native.sh`).
//!
//! Exit status: 0 when the kernel reports success; QEMU's status (35 panic, 37 CPU exception,
//! 39 boot info refused, 41 configuration refused, 43 set-up failed) when it reports a failure;
//! 124 on timeout; 130 on Ctrl-C; 1 for anything else (QEMU errors, a guest that reset without
//! reporting).

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use ward_tools::qemu::{Accel, DEFAULT_MEMORY_MIB, RunningVm, SerialSink, VmConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The firmware image built by `ward build`.
    #[arg(long, default_value = "target/ward/ward.img")]
    image: PathBuf,
    /// Deployment configuration file (docs/config.md), passed as fw_cfg `opt/ward/config`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    memory: u32,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Accelerator; by default KVM only where kvm_amd/kvm_intel is loaded, else TCG.
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Raw disk image attached read-only as a modern virtio-blk device.
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Attach virtio-vsock through a per-VM vhost-device-vsock daemon.
    #[arg(long)]
    vsock: bool,
    /// Directory for the vsock sockets (default: a fresh temporary directory, removed after).
    #[arg(long, requires = "vsock")]
    vsock_dir: Option<PathBuf>,
    /// Write the serial console to this file instead of standard output.
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Stop the VM after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let mut config = VmConfig::new(&args.image);
    config.config = args.config;
    config.memory_mib = args.memory;
    config.cpus = args.smp;
    config.accel = args.accel.unwrap_or(config.accel);
    config.disk = args.disk;
    config.vsock = args.vsock;
    config.vsock_dir = args.vsock_dir;
    let sink = args
        .serial
        .clone()
        .map_or(SerialSink::Stdout, SerialSink::File);

    eprintln!(
        "ward run: {} with {} MiB, {} CPU(s), {}",
        config.image.display(),
        config.memory_mib,
        config.cpus,
        config.accel.name()
    );
    let vm = RunningVm::launch(&config, sink)?;
    if let Some(uds) = vm.uds_path() {
        eprintln!(
            "ward run: vsock host side at {} (send `CONNECT <port>\\n`)",
            uds.display()
        );
    }
    if let Some(path) = &args.serial {
        eprintln!("ward run: serial console in {}", path.display());
    }
    let report = vm.wait(args.timeout.map(Duration::from_secs), &cancel);
    eprintln!(
        "ward run: {} after {:.3} s",
        report.outcome,
        report.elapsed.as_secs_f64()
    );
    Ok(ExitCode::from(report.outcome.exit_status()))
}
