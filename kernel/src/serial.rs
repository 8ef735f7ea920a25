//! COM1 (16550 UART at 0x3f8), polled, 115200 8N1: the kernel's only console.

use crate::arch::port::{inb, outb};
use core::fmt;
use spin::Mutex;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 0x20;

/// The UART, behind [`CONSOLE`].
pub struct Uart {
    _private: (),
}

impl Uart {
    fn write_byte(&mut self, byte: u8) {
        write_byte_unlocked(byte);
    }
}

fn write_byte_unlocked(byte: u8) {
    // SAFETY: COM1's registers; polling the line status then writing the data register is the
    // UART's transmit protocol. The bound keeps a missing UART from hanging the kernel.
    unsafe {
        for _ in 0..100_000 {
            if inb(LINE_STATUS) & TRANSMIT_EMPTY != 0 {
                break;
            }
        }
        outb(COM1, byte);
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

/// The console.
pub static CONSOLE: Mutex<Uart> = Mutex::new(Uart { _private: () });

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: the standard 16550 initialisation sequence on COM1, which only the kernel uses.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB on
        outb(COM1, 0x01); // divisor 1 = 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1, DLAB off
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

/// A writer that bypasses the lock, for fault and panic reports: the faulting code may hold
/// [`CONSOLE`], and the report matters more than interleaving.
pub struct EmergencyWriter;

impl fmt::Write for EmergencyWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                write_byte_unlocked(b'\r');
            }
            write_byte_unlocked(byte);
        }
        Ok(())
    }
}
