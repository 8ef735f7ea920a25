//! The QEMU command line for a Ward VM (documented for operators in `qemu/native.sh`).

use super::accel::Accel;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Guest RAM when the caller does not choose.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
/// The guest's vsock context ID.
pub const GUEST_CID: u32 = 3;
/// fw_cfg name of the deployment configuration (DESIGN §4).
pub const CONFIG_FW_CFG_NAME: &str = "opt/ward/config";

/// What to boot and with which devices.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The firmware image (`-bios`).
    pub image: PathBuf,
    /// The deployment configuration file, passed as fw_cfg `opt/ward/config`.
    pub config: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// A raw disk attached read-only as a modern virtio-blk device.
    pub disk: Option<PathBuf>,
    /// Attach a vhost-user vsock device served by a per-VM `vhost-device-vsock`.
    pub vsock: bool,
    /// Where the vsock sockets go (`vhost.sock`, `vm.vsock`); a fresh temporary directory,
    /// removed afterwards, when `None`.
    pub vsock_dir: Option<PathBuf>,
    /// The QEMU binary.
    pub qemu: PathBuf,
}

impl VmConfig {
    /// Defaults: 1 GiB, 1 CPU, detected accelerator, no devices, `qemu-system-x86_64` (or
    /// `$WARD_QEMU`).
    pub fn new(image: impl Into<PathBuf>) -> Self {
        Self {
            image: image.into(),
            config: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: 1,
            accel: Accel::detect(),
            disk: None,
            vsock: false,
            vsock_dir: None,
            qemu: std::env::var_os("WARD_QEMU")
                .map_or_else(|| "qemu-system-x86_64".into(), PathBuf::from),
        }
    }

    /// The arguments after the QEMU binary. `vhost_socket` is the vhost-user socket of the
    /// running vsock daemon (required when `vsock` is set).
    pub fn qemu_args(&self, vhost_socket: Option<&Path>) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let memory = format!("{}M", self.memory_mib);
        push(&["-machine", "q35,memory-backend=mem"]);
        // vhost-user needs guest RAM in a shared memfd; using it always keeps one layout.
        push(&[
            "-object",
            &format!("memory-backend-memfd,id=mem,size={memory},share=on"),
        ]);
        push(&["-m", &memory]);
        push(&["-smp", &self.cpus.to_string()]);
        push(&self.accel.args());
        push(&["-nodefaults", "-display", "none", "-no-reboot"]);
        push(&["-serial", "stdio"]);
        push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
        args.push("-bios".into());
        args.push(self.image.clone().into_os_string());
        if let Some(config) = &self.config {
            args.push("-fw_cfg".into());
            args.push(option_with_path(
                &format!("name={CONFIG_FW_CFG_NAME},file="),
                config,
                "",
            ));
        }
        if let Some(disk) = &self.disk {
            args.push("-drive".into());
            args.push(option_with_path(
                "file=",
                disk,
                ",if=none,format=raw,id=disk0,readonly=on",
            ));
            args.push("-device".into());
            args.push("virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on".into());
        }
        if let Some(socket) = vhost_socket.filter(|_| self.vsock) {
            args.push("-chardev".into());
            args.push(option_with_path("socket,id=vsock0,path=", socket, ""));
            args.push("-device".into());
            args.push(
                "vhost-user-vsock-pci,chardev=vsock0,disable-legacy=on,iommu_platform=on".into(),
            );
        }
        args
    }
}

/// `prefix` + path (commas doubled, QEMU's escape inside option lists) + `suffix`.
fn option_with_path(prefix: &str, path: &Path, suffix: &str) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = prefix.as_bytes().to_vec();
    for &byte in path.as_os_str().as_bytes() {
        bytes.push(byte);
        if byte == b',' {
            bytes.push(b',');
        }
    }
    bytes.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn minimal_command_line() {
        let mut config = VmConfig::new("/img/ward.img");
        config.accel = Accel::Tcg;
        config.memory_mib = 512;
        let line = joined(&config.qemu_args(None));
        assert_eq!(
            line,
            "-machine q35,memory-backend=mem -object memory-backend-memfd,id=mem,size=512M,share=on \
             -m 512M -smp 1 -accel tcg,thread=multi -cpu max -nodefaults -display none -no-reboot \
             -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -bios /img/ward.img"
        );
    }

    #[test]
    fn devices_and_comma_escaping() {
        let mut config = VmConfig::new("/img/ward.img");
        config.accel = Accel::Kvm;
        config.config = Some("/etc/ward,prod.conf".into());
        config.disk = Some("/d/model.disk".into());
        config.vsock = true;
        let line = joined(&config.qemu_args(Some(Path::new("/run/w/vhost.sock"))));
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(line.contains("-fw_cfg name=opt/ward/config,file=/etc/ward,,prod.conf"));
        assert!(line.contains(
            "-drive file=/d/model.disk,if=none,format=raw,id=disk0,readonly=on \
             -device virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on"
        ));
        assert!(line.contains(
            "-chardev socket,id=vsock0,path=/run/w/vhost.sock \
             -device vhost-user-vsock-pci,chardev=vsock0,disable-legacy=on,iommu_platform=on"
        ));
        // No socket, no vsock device.
        assert!(!joined(&config.qemu_args(None)).contains("vhost-user-vsock-pci"));
    }
}
