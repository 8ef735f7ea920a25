//! COM1 (16550 UART at 0x3F8) and the `log` backend that writes to it.

use super::cpu::{inb, outb};
use core::fmt::{self, Write};

const COM1: u16 = 0x3F8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// The serial port. It has no state of its own: the UART is the state.
pub struct Serial;

impl Serial {
    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init() {
        let setup = [
            (1, 0x00),
            (3, 0x80),
            (0, 0x01),
            (1, 0x00),
            (3, 0x03),
            (2, 0xC7),
            (4, 0x03),
        ];
        for (offset, value) in setup {
            // SAFETY: COM1's registers; programming them only affects the UART.
            unsafe { outb(COM1 + offset, value) };
        }
    }

    fn write_byte(byte: u8) {
        // SAFETY: reading COM1's line status register has no side effect.
        while unsafe { inb(LINE_STATUS) } & TRANSMIT_EMPTY == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: writing COM1's transmit register sends the byte.
        unsafe { outb(COM1, byte) };
    }
}

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                Self::write_byte(b'\r');
            }
            Self::write_byte(byte);
        }
        Ok(())
    }
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // Serial output has nowhere to report its own failure.
        let _ = writeln!(Serial, "[loader] {:<5} {}", record.level(), record.args());
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Sets up COM1 and routes `log` to it.
pub fn init_logging() {
    Serial::init();
    // Only fails when a logger is already set, and this runs once.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
