//! The x86-64 instruction decoder for the #VC (SNP) and #VE (TDX) handlers. They must emulate
//! the instruction that trapped: CPUID, RDMSR/WRMSR, port I/O (IN/OUT, immediate and DX forms;
//! string forms are refused), and the MOV loads/stores compiled code uses for MMIO (virtio
//! registers, PCI ECAM). Anything else is an error: the handler then stops the guest rather
//! than guess.
//!
//! The bytes come from our own code pages (private memory), but the decoder still treats them
//! as input: truncated or unknown encodings give a [`DecodeError`], never a panic.

use core::fmt;

/// Longest x86 instruction.
pub const MAX_INSTRUCTION_LEN: usize = 15;

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr {
    /// 0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX, 4 = RSP, 5 = RBP, 6 = RSI, 7 = RDI, 8..=15 = R8..R15.
    pub index: u8,
    /// AH, CH, DH or BH: the second byte of RAX..RBX (8-bit operand, no REX prefix).
    pub high_byte: bool,
}

/// How a load's value reaches its destination register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// MOV: the destination has the access's size.
    None,
    /// MOVZX to a destination of `dest_size` bytes.
    Zero { dest_size: u8 },
    /// MOVSX to a destination of `dest_size` bytes.
    Sign { dest_size: u8 },
}

/// The port of an IN/OUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Immediate(u8),
    /// The port is in DX.
    Dx,
}

/// What a store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreSource {
    Register(Gpr),
    /// The immediate, already extended to the access size.
    Immediate(u64),
}

/// A decoded instruction Ward can emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    Cpuid,
    Rdmsr,
    Wrmsr,
    /// IN AL/AX/EAX, port.
    In {
        size: u8,
        port: Port,
    },
    /// OUT port, AL/AX/EAX.
    Out {
        size: u8,
        port: Port,
    },
    /// A load of `size` bytes from memory into `dest`.
    MmioLoad {
        size: u8,
        dest: Gpr,
        extension: Extension,
    },
    /// A store of `size` bytes to memory.
    MmioStore {
        size: u8,
        source: StoreSource,
    },
}

/// An instruction and its length (how far to advance RIP after emulating it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub instruction: Instruction,
    pub len: usize,
}

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the instruction.
    Truncated,
    /// An opcode the handlers do not emulate.
    Unsupported(u8),
    /// A prefix the handlers do not emulate (REP, LOCK, ...).
    UnsupportedPrefix(u8),
    /// A MOV whose operand is a register, not memory (cannot have trapped on MMIO).
    NotMemory,
    /// Longer than 15 bytes.
    TooLong,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("instruction bytes end early"),
            Self::Unsupported(op) => write!(f, "opcode {op:#04x} is not emulated"),
            Self::UnsupportedPrefix(p) => write!(f, "prefix {p:#04x} is not emulated"),
            Self::NotMemory => f.write_str("MOV without a memory operand"),
            Self::TooLong => f.write_str("instruction longer than 15 bytes"),
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        let b = self.peek()?;
        self.at += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        if self.at >= MAX_INSTRUCTION_LEN {
            return Err(DecodeError::TooLong);
        }
        self.bytes
            .get(self.at)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.next()?;
        }
        Ok(())
    }

    fn immediate(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(self.next()?) << (8 * i);
        }
        Ok(v)
    }
}

#[derive(Clone, Copy, Default)]
struct Rex(u8);

impl Rex {
    fn present(self) -> bool {
        self.0 != 0
    }
    fn w(self) -> bool {
        self.0 & 8 != 0
    }
    fn r(self) -> u8 {
        (self.0 >> 2) & 1
    }
}

/// Skips ModRM's memory operand (SIB and displacement); returns the `reg` field.
fn modrm_memory(c: &mut Cursor<'_>) -> Result<u8, DecodeError> {
    let modrm = c.next()?;
    let mode = modrm >> 6;
    let rm = modrm & 7;
    if mode == 3 {
        return Err(DecodeError::NotMemory);
    }
    let mut disp = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = c.next()?;
        if mode == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if mode == 0 && rm == 5 {
        disp = 4; // RIP-relative
    }
    c.skip(disp)?;
    Ok((modrm >> 3) & 7)
}

fn gpr(reg: u8, rex: Rex, size: u8) -> Gpr {
    let index = reg | (rex.r() << 3);
    // Without REX, 8-bit registers 4..7 are AH, CH, DH, BH.
    let high_byte = size == 1 && !rex.present() && (4..8).contains(&reg);
    Gpr {
        index: if high_byte { reg - 4 } else { index },
        high_byte,
    }
}

/// Decodes the instruction at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut c = Cursor { bytes, at: 0 };
    let mut operand_16 = false;
    loop {
        match c.peek()? {
            0x66 => operand_16 = true,
            // Segment overrides and the address-size prefix change only the address, which the
            // handler takes from the exit information, not from the instruction.
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 | 0x67 => {}
            p @ (0xF0 | 0xF2 | 0xF3) => return Err(DecodeError::UnsupportedPrefix(p)),
            _ => break,
        }
        c.next()?;
    }
    let rex = if (0x40..=0x4F).contains(&c.peek()?) {
        Rex(c.next()?)
    } else {
        Rex(0)
    };
    let size = if rex.w() {
        8
    } else if operand_16 {
        2
    } else {
        4
    };
    let port_size = if operand_16 { 2 } else { 4 };
    let opcode = c.next()?;
    let instruction = match opcode {
        0x0F => match c.next()? {
            0xA2 => Instruction::Cpuid,
            0x32 => Instruction::Rdmsr,
            0x30 => Instruction::Wrmsr,
            op @ (0xB6 | 0xB7 | 0xBE | 0xBF) => {
                let reg = modrm_memory(&mut c)?;
                let access = if op & 1 == 0 { 1 } else { 2 };
                let extension = if op < 0xBE {
                    Extension::Zero { dest_size: size }
                } else {
                    Extension::Sign { dest_size: size }
                };
                Instruction::MmioLoad {
                    size: access,
                    dest: gpr(reg, rex, size),
                    extension,
                }
            }
            op => return Err(DecodeError::Unsupported(op)),
        },
        0x88 | 0x89 => {
            let access = if opcode == 0x88 { 1 } else { size };
            let reg = modrm_memory(&mut c)?;
            Instruction::MmioStore {
                size: access,
                source: StoreSource::Register(gpr(reg, rex, access)),
            }
        }
        0x8A | 0x8B => {
            let access = if opcode == 0x8A { 1 } else { size };
            let reg = modrm_memory(&mut c)?;
            Instruction::MmioLoad {
                size: access,
                dest: gpr(reg, rex, access),
                extension: Extension::None,
            }
        }
        0xC6 | 0xC7 => {
            let access = if opcode == 0xC6 { 1 } else { size };
            if modrm_memory(&mut c)? != 0 {
                return Err(DecodeError::Unsupported(opcode));
            }
            let value = match access {
                1 => c.immediate(1)?,
                2 => c.immediate(2)?,
                4 => c.immediate(4)?,
                // imm32 sign-extended to 64 bits.
                _ => c.immediate(4)? as u32 as i32 as i64 as u64,
            };
            Instruction::MmioStore {
                size: access,
                source: StoreSource::Immediate(value),
            }
        }
        0xE4 => Instruction::In {
            size: 1,
            port: Port::Immediate(c.next()?),
        },
        0xE5 => Instruction::In {
            size: port_size,
            port: Port::Immediate(c.next()?),
        },
        0xE6 => Instruction::Out {
            size: 1,
            port: Port::Immediate(c.next()?),
        },
        0xE7 => Instruction::Out {
            size: port_size,
            port: Port::Immediate(c.next()?),
        },
        0xEC => Instruction::In {
            size: 1,
            port: Port::Dx,
        },
        0xED => Instruction::In {
            size: port_size,
            port: Port::Dx,
        },
        0xEE => Instruction::Out {
            size: 1,
            port: Port::Dx,
        },
        0xEF => Instruction::Out {
            size: port_size,
            port: Port::Dx,
        },
        op => return Err(DecodeError::Unsupported(op)),
    };
    Ok(Decoded {
        instruction,
        len: c.at,
    })
}

/// The new value of a load's destination register, given its old value and the `value` read
/// (already truncated to the access size), following x86 rules: 32-bit destinations clear bits
/// 63:32, 8- and 16-bit destinations keep the other bits.
pub fn load_result(old: u64, value: u64, size: u8, dest: Gpr, extension: Extension) -> u64 {
    let (value, dest_size) = match extension {
        Extension::None => (value, size),
        Extension::Zero { dest_size } => (value, dest_size),
        Extension::Sign { dest_size } => {
            let shift = 64 - 8 * u32::from(size);
            ((((value << shift) as i64) >> shift) as u64, dest_size)
        }
    };
    if dest.high_byte {
        return (old & !0xFF00) | ((value & 0xFF) << 8);
    }
    match dest_size {
        1 => (old & !0xFF) | (value & 0xFF),
        2 => (old & !0xFFFF) | (value & 0xFFFF),
        4 => value & 0xFFFF_FFFF,
        _ => value,
    }
}

/// The bytes a store writes, from the source register's value.
pub fn store_value(register_value: u64, size: u8, source: Gpr) -> u64 {
    let value = if source.high_byte {
        register_value >> 8
    } else {
        register_value
    };
    match size {
        1 => value & 0xFF,
        2 => value & 0xFFFF,
        4 => value & 0xFFFF_FFFF,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAX: Gpr = Gpr {
        index: 0,
        high_byte: false,
    };
    const fn r(index: u8) -> Gpr {
        Gpr {
            index,
            high_byte: false,
        }
    }

    fn ok(bytes: &[u8], instruction: Instruction) {
        // Trailing bytes from the next instruction must not change the result.
        let mut padded = [0x90u8; 20];
        padded[..bytes.len()].copy_from_slice(bytes);
        let want = Decoded {
            instruction,
            len: bytes.len(),
        };
        assert_eq!(decode(bytes), Ok(want), "{bytes:02x?}");
        assert_eq!(decode(&padded), Ok(want), "{bytes:02x?} padded");
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(DecodeError::Truncated),
                "{bytes:02x?} cut at {cut}"
            );
        }
    }

    fn load(size: u8, dest: Gpr, extension: Extension) -> Instruction {
        Instruction::MmioLoad {
            size,
            dest,
            extension,
        }
    }

    fn store(size: u8, source: StoreSource) -> Instruction {
        Instruction::MmioStore { size, source }
    }

    // Encodings produced by GNU as (intel syntax), listed with their source.
    #[test]
    fn mmio_moves() {
        use Extension::None as Plain;
        use StoreSource::{Immediate, Register};
        ok(&[0x89, 0x08], store(4, Register(r(1)))); // mov [rax], ecx
        ok(&[0x8b, 0x47, 0x14], load(4, RAX, Plain)); // mov eax, [rdi+0x14]
        ok(&[0x45, 0x8b, 0x4c, 0x24, 0x08], load(4, r(9), Plain)); // mov r9d, [r12+8]
        ok(
            &[0x48, 0x8b, 0x84, 0xca, 0x00, 0x10, 0x00, 0x00],
            load(8, RAX, Plain),
        ); // mov rax, [rdx+rcx*8+0x1000]
        ok(&[0x66, 0x44, 0x89, 0x53, 0x12], store(2, Register(r(10)))); // mov [rbx+0x12], r10w
        ok(&[0x88, 0x06], store(1, Register(RAX))); // mov [rsi], al
        ok(
            &[0x88, 0x26],
            store(
                1,
                Register(Gpr {
                    index: 0,
                    high_byte: true,
                }),
            ),
        ); // mov [rsi], ah
        ok(&[0x40, 0x88, 0x36], store(1, Register(r(6)))); // mov [rsi], sil
        ok(&[0x8a, 0x0d, 0x00, 0x01, 0x00, 0x00], load(1, r(1), Plain)); // mov cl, [rip+0x100]
        ok(&[0xc6, 0x40, 0x04, 0x7f], store(1, Immediate(0x7f))); // mov byte [rax+4], 0x7f
        ok(
            &[0x43, 0xc7, 0x44, 0x88, 0x40, 0x78, 0x56, 0x34, 0x12],
            store(4, Immediate(0x1234_5678)),
        ); // mov dword [r8+r9*4+0x40], 0x12345678
        ok(
            &[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff],
            store(8, Immediate(u64::MAX - 1)),
        ); // mov qword [rax], -2
        ok(&[0x66, 0xc7, 0x01, 0x34, 0x12], store(2, Immediate(0x1234))); // mov word [rcx], 0x1234
        ok(
            &[0x0f, 0xb6, 0x42, 0x13],
            load(1, RAX, Extension::Zero { dest_size: 4 }),
        ); // movzx eax, byte [rdx+0x13]
        ok(
            &[0x45, 0x0f, 0xb7, 0x1a],
            load(2, r(11), Extension::Zero { dest_size: 4 }),
        ); // movzx r11d, word [r10]
        ok(
            &[0x48, 0x0f, 0xbe, 0x01],
            load(1, RAX, Extension::Sign { dest_size: 8 }),
        ); // movsx rax, byte [rcx]
        ok(&[0x8b, 0x45, 0x00], load(4, RAX, Plain)); // mov eax, [rbp+0]
        ok(&[0x8b, 0x04, 0x24], load(4, RAX, Plain)); // mov eax, [rsp]
        ok(&[0x41, 0x8b, 0x45, 0x00], load(4, RAX, Plain)); // mov eax, [r13+0]
        ok(
            &[0x8b, 0x14, 0x25, 0x00, 0x10, 0x00, 0x00],
            load(4, r(2), Plain),
        ); // mov edx, [0x1000]
        ok(&[0x64, 0x48, 0x8b, 0x18], load(8, r(3), Plain)); // mov rbx, fs:[rax]
    }

    #[test]
    fn cpuid_msr_and_ports() {
        ok(&[0x0f, 0xa2], Instruction::Cpuid);
        ok(&[0x0f, 0x32], Instruction::Rdmsr);
        ok(&[0x0f, 0x30], Instruction::Wrmsr);
        ok(
            &[0xe4, 0x71],
            Instruction::In {
                size: 1,
                port: Port::Immediate(0x71),
            },
        );
        ok(
            &[0xed],
            Instruction::In {
                size: 4,
                port: Port::Dx,
            },
        );
        ok(
            &[0x66, 0xed],
            Instruction::In {
                size: 2,
                port: Port::Dx,
            },
        );
        ok(
            &[0xee],
            Instruction::Out {
                size: 1,
                port: Port::Dx,
            },
        );
        ok(
            &[0xe6, 0x80],
            Instruction::Out {
                size: 1,
                port: Port::Immediate(0x80),
            },
        );
        ok(
            &[0xef],
            Instruction::Out {
                size: 4,
                port: Port::Dx,
            },
        );
        ok(
            &[0x66, 0xef],
            Instruction::Out {
                size: 2,
                port: Port::Dx,
            },
        );
        ok(
            &[0xe5, 0x60],
            Instruction::In {
                size: 4,
                port: Port::Immediate(0x60),
            },
        );
    }

    #[test]
    fn refuses_what_it_cannot_emulate() {
        assert_eq!(decode(&[0x89, 0xc8]), Err(DecodeError::NotMemory)); // mov eax, ecx
        assert_eq!(
            decode(&[0xf3, 0xa4]),
            Err(DecodeError::UnsupportedPrefix(0xf3))
        ); // rep movsb
        assert_eq!(decode(&[0x6e]), Err(DecodeError::Unsupported(0x6e))); // outsb
        assert_eq!(
            decode(&[0xf0, 0x01, 0x08]),
            Err(DecodeError::UnsupportedPrefix(0xf0))
        ); // lock add
        assert_eq!(
            decode(&[0xc7, 0x48, 0x04, 0, 0, 0, 0]),
            Err(DecodeError::Unsupported(0xc7))
        ); // /1 is not MOV
        assert_eq!(decode(&[0x0f, 0x0b]), Err(DecodeError::Unsupported(0x0b))); // ud2
        assert_eq!(decode(&[0x66; 20]), Err(DecodeError::TooLong));
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    }

    #[test]
    fn register_write_back_follows_x86_rules() {
        let old = 0xFFFF_FFFF_FFFF_FFFF;
        assert_eq!(
            load_result(old, 0x12, 1, RAX, Extension::None),
            0xFFFF_FFFF_FFFF_FF12
        );
        assert_eq!(
            load_result(
                old,
                0x12,
                1,
                Gpr {
                    index: 0,
                    high_byte: true
                },
                Extension::None
            ),
            0xFFFF_FFFF_FFFF_12FF
        );
        assert_eq!(
            load_result(old, 0x1234, 2, RAX, Extension::None),
            0xFFFF_FFFF_FFFF_1234
        );
        assert_eq!(
            load_result(old, 0x8000_0000, 4, RAX, Extension::None),
            0x8000_0000
        );
        assert_eq!(
            load_result(old, 0x80, 1, RAX, Extension::Zero { dest_size: 4 }),
            0x80
        );
        assert_eq!(
            load_result(0, 0x80, 1, RAX, Extension::Sign { dest_size: 8 }),
            0xFFFF_FFFF_FFFF_FF80
        );
        assert_eq!(
            load_result(0, 0x8000, 2, RAX, Extension::Sign { dest_size: 4 }),
            0xFFFF_8000
        );
        assert_eq!(
            store_value(
                0x1122_3344_5566_7788,
                1,
                Gpr {
                    index: 0,
                    high_byte: true
                }
            ),
            0x77
        );
        assert_eq!(store_value(0x1122_3344_5566_7788, 4, RAX), 0x5566_7788);
    }
}
