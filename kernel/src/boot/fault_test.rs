//! The deliberate faults a deployment configuration can ask for (`test_fault`), so the fault
//! tests can check that reports and exit codes work end to end.

use crate::arch::paging::layout::Stack;
use core::arch::asm;
use log::warn;
use ward_attestation::config::TestFault;

/// Faults as configured; never returns normally.
pub fn trigger(fault: TestFault) -> ! {
    match fault {
        TestFault::GuardPage => {
            let address = Stack::Kernel.bottom().as_u64() - 8;
            warn!(
                "test_fault = guard-page: reading {address:#x}, in the guard page below the kernel stack"
            );
            // SAFETY: not safe by design: the read hits an unmapped guard page and raises #PF,
            // whose handler reports and stops the machine. Done in assembly so no Rust-level
            // access to invalid memory exists.
            unsafe {
                asm!("mov {tmp}, qword ptr [{address}]", address = in(reg) address, tmp = out(reg) _, options(nostack, readonly))
            };
            panic!("the guard page at {address:#x} was readable");
        }
        TestFault::Panic => {
            warn!("test_fault = panic: panicking on purpose");
            panic!(
                "deliberate panic requested by the deployment configuration (test_fault = panic)"
            );
        }
    }
}
