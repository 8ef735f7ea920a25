//! How the kernel ends a run under QEMU: a value written to the `isa-debug-exit` device
//! (`-device isa-debug-exit,iobase=0xf4,iosize=4`) makes QEMU exit with status `(value << 1) | 1`.
//! The launcher (`ward_tools::qemu::outcome`) maps these statuses back:
//!
//! | code | QEMU status | meaning |
//! | --- | --- | --- |
//! | 0x10 | 33 | success |
//! | 0x11 | 35 | panic |
//! | 0x12 | 37 | CPU exception (fault report printed) |
//! | 0x13 | 39 | boot information refused |
//! | 0x14 | 41 | deployment configuration refused |
//! | 0x15 | 43 | kernel set-up failed (memory, page tables) |
//!
//! Any other status (0 included: QEMU exits 0 on a triple fault with `-no-reboot`) is a failure
//! the kernel did not report. Without the device (a real deployment) the CPU halts instead.

/// The `isa-debug-exit` I/O port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why the kernel stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything the run was asked to do succeeded.
    Success = 0x10,
    /// A Rust panic.
    Panic = 0x11,
    /// An unexpected CPU exception.
    Exception = 0x12,
    /// The loader's boot information was refused.
    BadBootInfo = 0x13,
    /// The deployment configuration was refused.
    BadConfig = 0x14,
    /// Memory or page-table set-up failed.
    SetupFailed = 0x15,
}

impl ExitCode {
    /// The status QEMU exits with.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// Stops the machine: through `isa-debug-exit` when present, else by halting forever.
#[cfg(target_os = "none")]
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device under QEMU and unassigned on q35 otherwise,
    // so the write either ends the VM or is ignored.
    unsafe { crate::arch::port::outl(DEBUG_EXIT_PORT, code as u32) };
    loop {
        // SAFETY: with interrupts off, HLT parks the CPU for good; nothing is left to run.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_documented_table() {
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        assert_eq!(ExitCode::Panic.qemu_status(), 35);
        assert_eq!(ExitCode::Exception.qemu_status(), 37);
        assert_eq!(ExitCode::BadBootInfo.qemu_status(), 39);
        assert_eq!(ExitCode::BadConfig.qemu_status(), 41);
        assert_eq!(ExitCode::SetupFailed.qemu_status(), 43);
    }
}
