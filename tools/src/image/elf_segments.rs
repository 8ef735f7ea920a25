//! Program headers of any x86-64 ELF (the loader's, whose segments have ROM load addresses, or a
//! kernel's, for the vector check). The kernel's strict validation lives in `ward_loader::elf`.

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramSegment {
    /// `p_type`.
    pub kind: u32,
    /// `p_flags` (R=4, W=2, X=1).
    pub flags: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub virtual_address: u64,
    /// `p_paddr`: for the loader, the address in the ROM image.
    pub physical_address: u64,
    /// `p_filesz`.
    pub file_size: u64,
    /// `p_memsz`.
    pub memory_size: u64,
}

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// Executable segment flag.
pub const PF_X: u32 = 1;

/// Why an ELF's program headers could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    /// Not a 64-bit little-endian x86-64 ELF.
    #[error("not a 64-bit little-endian x86-64 ELF file")]
    NotElf,
    /// The program header table or a segment lies outside the file.
    #[error("program header {0} or its bytes lie outside the file")]
    OutOfBounds(usize),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads and bounds-checks every program header.
pub fn program_segments(elf: &[u8]) -> Result<Vec<ProgramSegment>, SegmentError> {
    if elf.len() < 64 || elf[0..4] != *b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(SegmentError::NotElf);
    }
    if u16_at(elf, 18) != 62 || u16_at(elf, 54) != 56 {
        return Err(SegmentError::NotElf);
    }
    let table = u64_at(elf, 32);
    let count = usize::from(u16_at(elf, 56));
    let mut segments = Vec::with_capacity(count);
    for index in 0..count {
        let at = table
            .checked_add(56 * index as u64)
            .filter(|at| {
                at.checked_add(56)
                    .is_some_and(|end| end <= elf.len() as u64)
            })
            .ok_or(SegmentError::OutOfBounds(index))? as usize;
        let segment = ProgramSegment {
            kind: u32_at(elf, at),
            flags: u32_at(elf, at + 4),
            offset: u64_at(elf, at + 8),
            virtual_address: u64_at(elf, at + 16),
            physical_address: u64_at(elf, at + 24),
            file_size: u64_at(elf, at + 32),
            memory_size: u64_at(elf, at + 40),
        };
        if segment
            .offset
            .checked_add(segment.file_size)
            .is_none_or(|end| end > elf.len() as u64)
        {
            return Err(SegmentError::OutOfBounds(index));
        }
        segments.push(segment);
    }
    Ok(segments)
}

impl ProgramSegment {
    /// The segment's bytes in `elf` (bounds were checked by [`program_segments`]).
    pub fn file_bytes<'a>(&self, elf: &'a [u8]) -> &'a [u8] {
        &elf[self.offset as usize..(self.offset + self.file_size) as usize]
    }
}
