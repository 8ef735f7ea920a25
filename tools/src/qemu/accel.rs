//! Which accelerator QEMU uses. `/dev/kvm` alone proves nothing: on these development machines
//! it is a software nested-virtualization backend (`kvm_pvm`) thousands of times slower than
//! TCG, so KVM is chosen only when a hardware KVM module is loaded.

use std::path::Path;

/// A QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Hardware virtualization: `-accel kvm -cpu host`.
    Kvm,
    /// QEMU's multi-threaded TCG with every feature it emulates: `-accel tcg,thread=multi -cpu max`.
    Tcg,
}

impl Accel {
    /// KVM when `kvm_amd` or `kvm_intel` is loaded, else TCG.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/sys/module"))
    }

    /// [`Self::detect`] against another `/sys/module`.
    pub fn detect_in(sys_module: &Path) -> Self {
        let hardware = ["kvm_amd", "kvm_intel"]
            .iter()
            .any(|m| sys_module.join(m).exists());
        if hardware { Self::Kvm } else { Self::Tcg }
    }

    /// The QEMU arguments selecting it.
    pub fn args(self) -> [&'static str; 4] {
        match self {
            Self::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Self::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_with_a_hardware_module() {
        let dir = std::env::temp_dir().join(format!("ward-accel-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kvm")).unwrap();
        std::fs::create_dir_all(dir.join("kvm_pvm")).unwrap();
        assert_eq!(Accel::detect_in(&dir), Accel::Tcg);
        std::fs::create_dir_all(dir.join("kvm_amd")).unwrap();
        assert_eq!(Accel::detect_in(&dir), Accel::Kvm);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            Accel::Tcg.args(),
            ["-accel", "tcg,thread=multi", "-cpu", "max"]
        );
    }
}
