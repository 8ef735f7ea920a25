//! The panic handler: report the location and message on the console, then a failure exit.

use crate::exit::{ExitCode, exit};
use crate::serial::EmergencyWriter;
use core::fmt::Write;
use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let mut out = EmergencyWriter;
    let _ = write!(out, "\n!!! KERNEL PANIC");
    if let Some(location) = info.location() {
        let _ = write!(
            out,
            " at {}:{}:{}",
            location.file(),
            location.line(),
            location.column()
        );
    }
    let _ = writeln!(out, ": {}", info.message());
    exit(ExitCode::Panic)
}
