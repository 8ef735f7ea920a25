//! Device-register accesses as single plain `mov` instructions.
//!
//! Under SEV-SNP and TDX an MMIO access traps (#VC / #VE) and the kernel's handler emulates it
//! from the decoded instruction, which it can only do for the simple MOV forms. A
//! `read_volatile`/`write_volatile` leaves the choice of instruction to the compiler, which may
//! pick a vector load (e.g. `vpbroadcastd` for a 32-bit read whose value is splatted later);
//! Linux's `readl`/`writel` use inline assembly for the same reason.

use core::arch::asm;

/// A register width accessed with one `mov`.
pub trait Register: Copy {
    /// Reads the register at `address`.
    ///
    /// # Safety
    /// `address` must be mapped, aligned for `Self`, and a register (or memory) the caller may
    /// read, side effects included.
    unsafe fn load(address: *const Self) -> Self;

    /// Writes the register at `address`.
    ///
    /// # Safety
    /// `address` must be mapped, aligned for `Self`, and a register (or memory) the caller may
    /// write.
    unsafe fn store(address: *mut Self, value: Self);
}

macro_rules! register {
    ($type:ty, $load:literal, $store:literal) => {
        impl Register for $type {
            unsafe fn load(address: *const Self) -> Self {
                let value: $type;
                // SAFETY: the caller vouches for the address; one MOV reads it.
                unsafe {
                    asm!($load, value = out(reg) value, address = in(reg) address,
                         options(nostack, preserves_flags))
                };
                value
            }

            unsafe fn store(address: *mut Self, value: Self) {
                // SAFETY: the caller vouches for the address; one MOV writes it.
                unsafe {
                    asm!($store, value = in(reg) value, address = in(reg) address,
                         options(nostack, preserves_flags))
                };
            }
        }
    };
}

register!(
    u16,
    "mov {value:x}, word ptr [{address}]",
    "mov word ptr [{address}], {value:x}"
);
register!(
    u32,
    "mov {value:e}, dword ptr [{address}]",
    "mov dword ptr [{address}], {value:e}"
);
register!(
    u64,
    "mov {value}, qword ptr [{address}]",
    "mov qword ptr [{address}], {value}"
);

impl Register for u8 {
    unsafe fn load(address: *const Self) -> Self {
        let value: u8;
        // SAFETY: the caller vouches for the address; one MOV reads it.
        unsafe {
            asm!("mov {value}, byte ptr [{address}]", value = out(reg_byte) value,
                 address = in(reg) address, options(nostack, preserves_flags))
        };
        value
    }

    unsafe fn store(address: *mut Self, value: Self) {
        // SAFETY: the caller vouches for the address; one MOV writes it.
        unsafe {
            asm!("mov byte ptr [{address}], {value}", value = in(reg_byte) value,
                 address = in(reg) address, options(nostack, preserves_flags))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::Register;

    #[test]
    fn every_width_reads_and_writes_exactly_its_bytes() {
        let mut cells = [0u64; 2];
        let base = cells.as_mut_ptr().cast::<u8>();
        // SAFETY: every address below is inside `cells` and aligned for its width.
        unsafe {
            u64::store(base.cast(), 0x1122_3344_5566_7788);
            assert_eq!(u64::load(base.cast()), 0x1122_3344_5566_7788);
            u32::store(base.add(8).cast(), 0xdead_beef);
            assert_eq!(u32::load(base.add(8).cast()), 0xdead_beef);
            u16::store(base.add(12).cast(), 0xcafe);
            u8::store(base.add(14).cast(), 0x5a);
            assert_eq!(u16::load(base.add(12).cast()), 0xcafe);
            assert_eq!(u8::load(base.add(14).cast()), 0x5a);
            assert_eq!(u8::load(base.add(15).cast()), 0, "neighbour untouched");
        }
        assert_eq!(cells[1], 0x005a_cafe_dead_beef);
    }
}
