//! The hard-float check: a kernel built for Ward's target is full of AVX code (LLVM uses ymm
//! registers for copies, and the SIMD kernels use them throughout). A kernel with no ymm or zmm
//! instruction at all was built soft-float — the silent fallback of the stock
//! `x86_64-unknown-none` target — and must not ship.

use super::elf_segments::{PF_X, PT_LOAD, SegmentError, program_segments};
use iced_x86::{Decoder, DecoderOptions, Instruction};

/// Instructions found in a kernel's executable segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorCount {
    /// All decoded instructions.
    pub instructions: u64,
    /// Instructions with a ymm operand (AVX/AVX2, or AVX-512 at 256 bits).
    pub ymm: u64,
    /// Instructions with a zmm operand (AVX-512).
    pub zmm: u64,
}

impl VectorCount {
    /// Whether the kernel contains wide vector code.
    pub fn passes(&self) -> bool {
        self.ymm + self.zmm > 0
    }
}

impl std::fmt::Display for VectorCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} instructions, {} with ymm and {} with zmm registers",
            self.instructions, self.ymm, self.zmm
        )
    }
}

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum VectorCheckError {
    /// The file is not a readable ELF.
    #[error("kernel ELF: {0}")]
    Elf(#[from] SegmentError),
    /// No executable code at all.
    #[error("kernel ELF has no executable segment")]
    NoCode,
    /// Executable code without one ymm/zmm instruction: a soft-float build.
    #[error(
        "vector check failed ({0}): not one ymm/zmm instruction, so this is a soft-float build \
         (stock x86_64-unknown-none?), not one for targets/x86_64-ward.json"
    )]
    NoVectorCode(VectorCount),
}

/// Counts instructions in every executable `PT_LOAD` segment of `elf`.
pub fn count_vector_instructions(elf: &[u8]) -> Result<VectorCount, VectorCheckError> {
    let mut count = VectorCount::default();
    let mut any_code = false;
    for segment in program_segments(elf)? {
        if segment.kind != PT_LOAD || segment.flags & PF_X == 0 {
            continue;
        }
        any_code = true;
        let code = segment.file_bytes(elf);
        let mut decoder = Decoder::with_ip(64, code, segment.virtual_address, DecoderOptions::NONE);
        let mut instruction = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            if instruction.is_invalid() {
                continue;
            }
            count.instructions += 1;
            let registers = (0..instruction.op_count()).map(|i| instruction.op_register(i));
            let (mut ymm, mut zmm) = (false, false);
            for register in registers {
                ymm |= register.is_ymm();
                zmm |= register.is_zmm();
            }
            count.ymm += u64::from(ymm);
            count.zmm += u64::from(zmm);
        }
    }
    if !any_code {
        return Err(VectorCheckError::NoCode);
    }
    Ok(count)
}

/// Passes when the kernel contains ymm/zmm code; returns the counts either way in the result.
pub fn check(elf: &[u8]) -> Result<VectorCount, VectorCheckError> {
    let count = count_vector_instructions(elf)?;
    if count.passes() {
        Ok(count)
    } else {
        Err(VectorCheckError::NoVectorCode(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_loader::elf::test_elf::{Segment, build};
    use ward_loader::layout::KERNEL_VIRTUAL_BASE as BASE;

    // vaddps ymm0, ymm1, ymm2 ; ret
    const AVX: &[u8] = &[0xC5, 0xF4, 0x58, 0xC2, 0xC3];
    // vaddps zmm0, zmm1, zmm2 ; ret
    const AVX512: &[u8] = &[0x62, 0xF1, 0x74, 0x48, 0x58, 0xC2, 0xC3];
    // addss xmm0, xmm1 ; call rel32 (a soft-float helper would be here) ; ret
    const SCALAR: &[u8] = &[0xF3, 0x0F, 0x58, 0xC1, 0xE8, 0, 0, 0, 0, 0xC3];

    fn kernel(code: &[u8]) -> Vec<u8> {
        build(
            BASE,
            &[
                Segment::load(5, BASE, code, 0),
                Segment::load(6, BASE + 0x1000, AVX, 0),
            ],
        )
    }

    #[test]
    fn counts_ymm_and_zmm_in_code_only() {
        let count = check(&kernel(&[AVX, AVX512].concat())).unwrap();
        assert_eq!(
            count,
            VectorCount {
                instructions: 4,
                ymm: 1,
                zmm: 1
            }
        );
    }

    #[test]
    fn fails_scalar_only_code_even_with_vector_bytes_in_data() {
        let result = check(&kernel(SCALAR));
        match result {
            Err(VectorCheckError::NoVectorCode(count)) => {
                assert_eq!(
                    count,
                    VectorCount {
                        instructions: 3,
                        ymm: 0,
                        zmm: 0
                    }
                )
            }
            other => panic!("expected a failed check, got {other:?}"),
        }
    }

    #[test]
    fn refuses_non_elf_and_codeless_files() {
        assert!(matches!(check(b"nope"), Err(VectorCheckError::Elf(_))));
        let data_only = build(BASE, &[Segment::load(6, BASE, AVX, 0)]);
        assert!(matches!(check(&data_only), Err(VectorCheckError::NoCode)));
    }
}
