//! `log` backend: `[seconds.micros] LEVEL message` lines on COM1, timestamps from the TSC.

use crate::arch::tsc;
use crate::serial::CONSOLE;
use core::fmt::Write;
use log::{LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let micros = tsc::micros_since_start();
        let mut console = CONSOLE.lock();
        let _ = writeln!(
            console,
            "[{:4}.{:06}] {:5} {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls are ignored).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
