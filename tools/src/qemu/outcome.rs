//! What QEMU's exit status says about the kernel. The kernel writes a code to `isa-debug-exit`
//! (port 0xf4) and QEMU exits with `(code << 1) | 1`; the codes are defined in
//! `kernel/src/exit.rs` and mirrored here:
//!
//! | QEMU status | kernel code | meaning |
//! | --- | --- | --- |
//! | 33 | 0x10 | success |
//! | 35 | 0x11 | panic |
//! | 37 | 0x12 | CPU exception |
//! | 39 | 0x13 | boot information refused |
//! | 41 | 0x14 | deployment configuration refused |
//! | 43 | 0x15 | kernel set-up failed |
//!
//! Any other status — 0 included, which is what QEMU returns after a triple fault with
//! `-no-reboot` — means the kernel did not report.

use std::fmt;
use std::process::ExitStatus;

/// A code the kernel reported through `isa-debug-exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelExit {
    /// 0x10.
    Success,
    /// 0x11.
    Panic,
    /// 0x12.
    Exception,
    /// 0x13.
    BadBootInfo,
    /// 0x14.
    BadConfig,
    /// 0x15.
    SetupFailed,
}

impl KernelExit {
    /// Decodes QEMU's exit status.
    pub fn from_qemu_status(status: i32) -> Option<Self> {
        if status & 1 == 0 {
            return None;
        }
        match status >> 1 {
            0x10 => Some(Self::Success),
            0x11 => Some(Self::Panic),
            0x12 => Some(Self::Exception),
            0x13 => Some(Self::BadBootInfo),
            0x14 => Some(Self::BadConfig),
            0x15 => Some(Self::SetupFailed),
            _ => None,
        }
    }

    /// The status QEMU exits with for this code.
    pub fn qemu_status(self) -> i32 {
        let code = match self {
            Self::Success => 0x10,
            Self::Panic => 0x11,
            Self::Exception => 0x12,
            Self::BadBootInfo => 0x13,
            Self::BadConfig => 0x14,
            Self::SetupFailed => 0x15,
        };
        (code << 1) | 1
    }
}

impl fmt::Display for KernelExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Success => "success",
            Self::Panic => "kernel panic",
            Self::Exception => "CPU exception",
            Self::BadBootInfo => "boot information refused",
            Self::BadConfig => "deployment configuration refused",
            Self::SetupFailed => "kernel set-up failed",
        })
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel reported through `isa-debug-exit`.
    Kernel(KernelExit),
    /// QEMU exited with a status the kernel did not produce (0 after a triple fault or guest
    /// shutdown, 1 for QEMU's own errors).
    Qemu(i32),
    /// QEMU was killed by a signal nobody in this process sent.
    Signaled(i32),
    /// The timeout passed; QEMU was stopped.
    TimedOut,
    /// The caller cancelled (Ctrl-C); QEMU was stopped.
    Interrupted,
}

impl Outcome {
    /// From QEMU's exit status.
    pub fn from_exit_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match status.code() {
            Some(code) => KernelExit::from_qemu_status(code).map_or(Self::Qemu(code), Self::Kernel),
            None => Self::Signaled(status.signal().unwrap_or(0)),
        }
    }

    /// Whether the kernel reported success.
    pub fn is_success(self) -> bool {
        self == Self::Kernel(KernelExit::Success)
    }

    /// The exit status for `ward run`: 0 for success, QEMU's status for a kernel-reported
    /// failure, 124 for a timeout, 130 for Ctrl-C, 1 otherwise.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Kernel(KernelExit::Success) => 0,
            Self::Kernel(exit) => exit.qemu_status() as u8,
            Self::TimedOut => 124,
            Self::Interrupted => 130,
            Self::Qemu(_) | Self::Signaled(_) => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(exit) => write!(f, "kernel exit: {exit} (QEMU status {})", exit.qemu_status()),
            Self::Qemu(0) => f.write_str("QEMU exited with status 0: the guest reset or shut down without reporting (triple fault?)"),
            Self::Qemu(code) => write!(f, "QEMU exited with status {code} without a kernel report"),
            Self::Signaled(signal) => write!(f, "QEMU was killed by signal {signal}"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Interrupted => f.write_str("interrupted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn statuses_decode_to_the_kernel_codes() {
        assert_eq!(KernelExit::from_qemu_status(33), Some(KernelExit::Success));
        assert_eq!(KernelExit::from_qemu_status(35), Some(KernelExit::Panic));
        assert_eq!(
            KernelExit::from_qemu_status(37),
            Some(KernelExit::Exception)
        );
        assert_eq!(
            KernelExit::from_qemu_status(43),
            Some(KernelExit::SetupFailed)
        );
        assert_eq!(KernelExit::from_qemu_status(0), None);
        assert_eq!(KernelExit::from_qemu_status(1), None);
        assert_eq!(KernelExit::from_qemu_status(34), None);
        for exit in [
            KernelExit::Success,
            KernelExit::Panic,
            KernelExit::BadConfig,
        ] {
            assert_eq!(KernelExit::from_qemu_status(exit.qemu_status()), Some(exit));
        }
    }

    #[test]
    fn outcomes_from_wait_statuses() {
        // Wait statuses: exit code in bits 8..16, signal in the low 7 bits.
        assert!(Outcome::from_exit_status(ExitStatus::from_raw(33 << 8)).is_success());
        assert_eq!(
            Outcome::from_exit_status(ExitStatus::from_raw(0)),
            Outcome::Qemu(0)
        );
        assert_eq!(
            Outcome::from_exit_status(ExitStatus::from_raw(9)),
            Outcome::Signaled(9)
        );
        assert_eq!(Outcome::Kernel(KernelExit::Success).exit_status(), 0);
        assert_eq!(Outcome::Kernel(KernelExit::Panic).exit_status(), 35);
        assert_eq!(Outcome::Qemu(0).exit_status(), 1);
        assert_eq!(Outcome::TimedOut.exit_status(), 124);
    }
}
