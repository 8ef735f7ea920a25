//! The address of an instruction's memory operand, for the #VC handler's MMIO emulation.
//!
//! Under SNP an MMIO access raises #VC with the nested-page-fault exit code and nothing else:
//! unlike TDX's #VE, the hardware does not say which address was touched. The handler therefore
//! computes the effective address from the instruction's ModRM/SIB/displacement and the
//! interrupted registers, as Linux's and COCONUT-SVSM's #VC handlers do. Only the flat 64-bit
//! forms compiled kernel code uses are accepted: FS/GS segment overrides and 32-bit address
//! size are refused, so the linear address is exactly the computed one.

use core::fmt;
use ward_attestation::guest::insn::MAX_INSTRUCTION_LEN;

/// Why no address could be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandError {
    /// The bytes end inside the instruction.
    Truncated,
    /// FS/GS override or 32-bit addressing: not used by the kernel for MMIO.
    UnsupportedPrefix(u8),
    /// The ModRM byte names a register, not memory.
    NotMemory,
    /// More prefixes than an instruction can hold.
    TooLong,
}

impl fmt::Display for OperandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("instruction bytes end early"),
            Self::UnsupportedPrefix(p) => write!(f, "prefix {p:#04x} is not emulated for MMIO"),
            Self::NotMemory => f.write_str("operand is a register"),
            Self::TooLong => f.write_str("instruction longer than 15 bytes"),
        }
    }
}

struct Bytes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Result<u8, OperandError> {
        if self.at >= MAX_INSTRUCTION_LEN {
            return Err(OperandError::TooLong);
        }
        let byte = *self.bytes.get(self.at).ok_or(OperandError::Truncated)?;
        self.at += 1;
        Ok(byte)
    }

    fn displacement(&mut self, len: usize) -> Result<u64, OperandError> {
        Ok(match len {
            1 => self.next()? as i8 as i64 as u64,
            4 => {
                let mut raw = [0u8; 4];
                for byte in &mut raw {
                    *byte = self.next()?;
                }
                i32::from_le_bytes(raw) as i64 as u64
            }
            _ => 0,
        })
    }
}

/// The linear address of the memory operand of the instruction at the start of `bytes`
/// (the MOV forms `ward_attestation::guest::insn` decodes), `len` bytes long (its decoded
/// length, for RIP-relative operands), at `rip`; `register(i)` gives GPR `i` (0 = RAX … 15 =
/// R15) as the instruction saw it.
pub fn effective_address(
    bytes: &[u8],
    len: usize,
    rip: u64,
    register: impl Fn(u8) -> u64,
) -> Result<u64, OperandError> {
    let mut c = Bytes { bytes, at: 0 };
    let mut byte = c.next()?;
    loop {
        match byte {
            0x64 | 0x65 | 0x67 => return Err(OperandError::UnsupportedPrefix(byte)),
            // Operand size, CS/DS/ES/SS overrides (flat in long mode): no effect on the address.
            0x66 | 0x26 | 0x2E | 0x36 | 0x3E => byte = c.next()?,
            _ => break,
        }
    }
    let rex = if (0x40..=0x4F).contains(&byte) {
        let rex = byte;
        byte = c.next()?;
        rex
    } else {
        0
    };
    if byte == 0x0F {
        c.next()?;
    }
    let modrm = c.next()?;
    let mode = modrm >> 6;
    let rm = modrm & 7;
    if mode == 3 {
        return Err(OperandError::NotMemory);
    }
    let rex_b = (rex & 1) << 3;
    let rex_x = ((rex >> 1) & 1) << 3;
    let displacement_len = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    let address = if rm == 4 {
        let sib = c.next()?;
        let scale = 1u64 << (sib >> 6);
        let index = ((sib >> 3) & 7) | rex_x;
        // Index 4 without REX.X means "no index" (RSP cannot be an index).
        let index_value = if index == 4 {
            0
        } else {
            register(index).wrapping_mul(scale)
        };
        let base = (sib & 7) | rex_b;
        if mode == 0 && sib & 7 == 5 {
            // No base: disp32 (+ index).
            index_value.wrapping_add(c.displacement(4)?)
        } else {
            register(base)
                .wrapping_add(index_value)
                .wrapping_add(c.displacement(displacement_len)?)
        }
    } else if mode == 0 && rm == 5 {
        let next_rip = rip.wrapping_add(len as u64);
        next_rip.wrapping_add(c.displacement(4)?)
    } else {
        register(rm | rex_b).wrapping_add(c.displacement(displacement_len)?)
    };
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_attestation::guest::insn::decode;

    /// Register i holds 0x1000 * (i + 1).
    fn regs(i: u8) -> u64 {
        0x1000 * (u64::from(i) + 1)
    }

    fn ea(bytes: &[u8]) -> Result<u64, OperandError> {
        let len = decode(bytes).map(|d| d.len).unwrap_or(bytes.len());
        effective_address(bytes, len, 0x10_0000, regs)
    }

    // Encodings produced by GNU as (intel syntax).
    #[test]
    fn addressing_forms() {
        // mov eax, [rdi+0x14]
        assert_eq!(ea(&[0x8b, 0x47, 0x14]), Ok(0x8000 + 0x14));
        // mov r9d, [r12+8]  (SIB with base r12)
        assert_eq!(ea(&[0x45, 0x8b, 0x4c, 0x24, 0x08]), Ok(0xD000 + 8));
        // mov rax, [rdx+rcx*8+0x1000]
        assert_eq!(
            ea(&[0x48, 0x8b, 0x84, 0xca, 0x00, 0x10, 0x00, 0x00]),
            Ok(0x3000 + 0x2000 * 8 + 0x1000)
        );
        // mov [r13+0], eax  (mod 01 rm 101 with REX.B: r13 + disp8, not RIP-relative)
        assert_eq!(ea(&[0x41, 0x89, 0x45, 0x00]), Ok(0xE000));
        // mov eax, [rip+0x10]: relative to the next instruction
        assert_eq!(ea(&[0x8b, 0x05, 0x10, 0, 0, 0]), Ok(0x10_0000 + 6 + 0x10));
        // mov dword [rip-8], 5: the immediate counts in the length
        assert_eq!(
            ea(&[0xc7, 0x05, 0xf8, 0xff, 0xff, 0xff, 5, 0, 0, 0]),
            Ok(0x10_0000 + 10 - 8)
        );
        // mov eax, [rsp]
        assert_eq!(ea(&[0x8b, 0x04, 0x24]), Ok(0x5000));
        // mov eax, [0x1234]  (SIB, no base, no index)
        assert_eq!(ea(&[0x8b, 0x04, 0x25, 0x34, 0x12, 0, 0]), Ok(0x1234));
        // movzx eax, byte [rdi-1]
        assert_eq!(ea(&[0x0f, 0xb6, 0x47, 0xff]), Ok(0x8000 - 1));
        // mov word [rax], 0x1234 (operand-size prefix)
        assert_eq!(ea(&[0x66, 0xc7, 0x00, 0x34, 0x12]), Ok(0x1000));
        // mov eax, [r8+r9*4]  (REX.B and REX.X)
        assert_eq!(ea(&[0x43, 0x8b, 0x04, 0x88]), Ok(0x9000 + 0xA000 * 4));
        // mov eax, [rbp+rax*2-0x80]: disp32 of mode 2
        assert_eq!(
            ea(&[0x8b, 0x84, 0x45, 0x80, 0xff, 0xff, 0xff]),
            Ok(0x6000 + 0x1000 * 2 - 0x80)
        );
    }

    #[test]
    fn refusals() {
        // mov eax, fs:[rax]
        assert_eq!(
            ea(&[0x64, 0x8b, 0x00]),
            Err(OperandError::UnsupportedPrefix(0x64))
        );
        // mov eax, [eax]
        assert_eq!(
            ea(&[0x67, 0x8b, 0x00]),
            Err(OperandError::UnsupportedPrefix(0x67))
        );
        // mov eax, ecx
        assert_eq!(ea(&[0x8b, 0xc1]), Err(OperandError::NotMemory));
        assert_eq!(ea(&[0x8b, 0x84, 0x45]), Err(OperandError::Truncated));
        assert_eq!(ea(&[0x66; 20]), Err(OperandError::TooLong));
    }
}
