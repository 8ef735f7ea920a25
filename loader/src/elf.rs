//! Strict ELF64 parsing of the kernel and its load plan.
//!
//! The kernel is a static x86-64 ELF (`ET_EXEC`, or a static PIE `ET_DYN` linked at its final
//! address) whose `PT_LOAD` segments all lie in the top 2 GiB of the address space. Every offset,
//! size and address is bounds- and overflow-checked, segments may not overlap or share a page,
//! and no segment may be both writable and executable. A static PIE may carry
//! `R_X86_64_RELATIVE` relocations; since the kernel is loaded at its link address the relocated
//! value is the addend itself, written when the segments are copied.

use crate::layout::{KERNEL_VIRTUAL_BASE, PAGE_SIZE};
use core::fmt;

/// Most `PT_LOAD` segments accepted.
pub const MAX_LOAD_SEGMENTS: usize = 16;
/// Most program headers accepted.
pub const MAX_PROGRAM_HEADERS: usize = 64;
/// Largest virtual span of the kernel's segments (the page-table pool is sized for it).
pub const MAX_KERNEL_SPAN: u64 = 128 << 20;

const ELF_HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_PLTRELSZ: u64 = 2;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_RELSZ: u64 = 18;
const DT_RELRSZ: u64 = 35;
const RELA_ENTRY_SIZE: u64 = 24;
const R_X86_64_RELATIVE: u32 = 8;

/// How a segment is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permissions {
    /// Read-only, not executable.
    ReadOnly,
    /// Read-write, not executable.
    ReadWrite,
    /// Read-only, executable.
    ReadExecute,
}

/// One `PT_LOAD` segment, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// First virtual address.
    pub virtual_address: u64,
    /// Bytes in memory (the part past `file_size` is zero).
    pub memory_size: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Mapping permissions.
    pub permissions: Permissions,
}

impl LoadSegment {
    const EMPTY: Self = Self {
        virtual_address: 0,
        memory_size: 0,
        file_offset: 0,
        file_size: 0,
        permissions: Permissions::ReadOnly,
    };

    /// First page the segment touches.
    pub fn page_start(&self) -> u64 {
        self.virtual_address & !(PAGE_SIZE - 1)
    }

    /// One past the last page the segment touches (checked at parse time not to overflow).
    pub fn page_end(&self) -> u64 {
        (self.virtual_address + self.memory_size).next_multiple_of(PAGE_SIZE)
    }
}

/// Why the kernel ELF was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Fewer bytes than an ELF header.
    TooShort(usize),
    /// Not `\x7fELF`, not 64-bit little-endian version 1.
    NotElf64,
    /// Not an x86-64 executable (`e_machine`).
    WrongMachine(u16),
    /// Neither `ET_EXEC` nor `ET_DYN`.
    WrongType(u16),
    /// `e_phentsize` is not 56.
    BadProgramHeaderSize(u16),
    /// No program headers, or more than [`MAX_PROGRAM_HEADERS`].
    BadProgramHeaderCount(u16),
    /// The program header table lies outside the file.
    ProgramHeadersOutOfBounds,
    /// A segment type the kernel may not have (`PT_INTERP`, `PT_TLS`).
    ForbiddenSegment(u32),
    /// No `PT_LOAD` segment with a non-zero size.
    NoLoadSegments,
    /// More than [`MAX_LOAD_SEGMENTS`] `PT_LOAD` segments.
    TooManySegments,
    /// `p_filesz > p_memsz`.
    FileSizeExceedsMemorySize { index: usize },
    /// The segment's file bytes lie outside the file.
    SegmentOutOfFile { index: usize },
    /// The segment's address range wraps around or lies below the kernel's virtual base.
    SegmentAddressOutOfRange { index: usize, address: u64 },
    /// The segment is both writable and executable.
    WritableAndExecutable { index: usize },
    /// Two segments overlap or share a page.
    SegmentsOverlap { first: usize, second: usize },
    /// The segments span more than [`MAX_KERNEL_SPAN`].
    SpanTooLarge(u64),
    /// The entry point is not inside an executable segment's file bytes.
    EntryNotExecutable(u64),
    /// The dynamic section is malformed or lies outside the file.
    BadDynamicSection,
    /// The dynamic section asks for something a static kernel cannot have.
    UnsupportedDynamicTag(u64),
    /// The relocation table is malformed or lies outside a loaded segment.
    BadRelocationTable,
    /// A relocation is not `R_X86_64_RELATIVE`.
    UnsupportedRelocation { index: u64, kind: u32 },
    /// A relocation writes outside the loaded segments.
    RelocationOutOfRange { index: u64, address: u64 },
    /// The destination buffer does not have the size of the span.
    DestinationSize { expected: u64, actual: usize },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "kernel ELF is {n} bytes, shorter than its header"),
            Self::NotElf64 => write!(f, "kernel is not a 64-bit little-endian ELF"),
            Self::WrongMachine(m) => write!(f, "kernel ELF machine {m} is not x86-64"),
            Self::WrongType(t) => write!(f, "kernel ELF type {t} is neither EXEC nor DYN"),
            Self::BadProgramHeaderSize(s) => write!(f, "program header size {s}, expected 56"),
            Self::BadProgramHeaderCount(n) => write!(f, "{n} program headers (1..=64 allowed)"),
            Self::ProgramHeadersOutOfBounds => write!(f, "program headers lie outside the file"),
            Self::ForbiddenSegment(t) => write!(f, "segment type {t:#x} is not allowed"),
            Self::NoLoadSegments => write!(f, "kernel ELF has no PT_LOAD segment"),
            Self::TooManySegments => write!(f, "more than {MAX_LOAD_SEGMENTS} PT_LOAD segments"),
            Self::FileSizeExceedsMemorySize { index } => {
                write!(f, "segment {index}: file size exceeds memory size")
            }
            Self::SegmentOutOfFile { index } => write!(f, "segment {index} lies outside the file"),
            Self::SegmentAddressOutOfRange { index, address } => write!(
                f,
                "segment {index} at {address:#x} wraps or lies below {KERNEL_VIRTUAL_BASE:#x}"
            ),
            Self::WritableAndExecutable { index } => {
                write!(f, "segment {index} is both writable and executable")
            }
            Self::SegmentsOverlap { first, second } => {
                write!(f, "segments {first} and {second} overlap or share a page")
            }
            Self::SpanTooLarge(s) => {
                write!(f, "segments span {s:#x} bytes, over {MAX_KERNEL_SPAN:#x}")
            }
            Self::EntryNotExecutable(e) => {
                write!(f, "entry point {e:#x} is not in an executable segment")
            }
            Self::BadDynamicSection => write!(f, "malformed dynamic section"),
            Self::UnsupportedDynamicTag(t) => write!(f, "unsupported dynamic tag {t}"),
            Self::BadRelocationTable => write!(f, "malformed relocation table"),
            Self::UnsupportedRelocation { index, kind } => {
                write!(
                    f,
                    "relocation {index} has type {kind}, only RELATIVE is supported"
                )
            }
            Self::RelocationOutOfRange { index, address } => {
                write!(
                    f,
                    "relocation {index} writes {address:#x}, outside the loaded segments"
                )
            }
            Self::DestinationSize { expected, actual } => {
                write!(
                    f,
                    "load destination has {actual} bytes, expected {expected}"
                )
            }
        }
    }
}

/// A validated kernel ELF, ready to be copied.
#[derive(Clone, Copy, Debug)]
pub struct KernelElf<'a> {
    bytes: &'a [u8],
    entry: u64,
    segments: [LoadSegment; MAX_LOAD_SEGMENTS],
    segment_count: usize,
    /// File offset and entry count of the `RELA` table, if any.
    relocations: Option<(u64, u64)>,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// `[offset, offset + size)` as a range of `bytes`, if it lies inside.
fn file_range(bytes: &[u8], offset: u64, size: u64) -> Option<core::ops::Range<usize>> {
    let end = offset.checked_add(size)?;
    if end > bytes.len() as u64 {
        return None;
    }
    Some(offset as usize..end as usize)
}

struct ProgramHeader {
    kind: u32,
    flags: u32,
    offset: u64,
    virtual_address: u64,
    file_size: u64,
    memory_size: u64,
}

impl<'a> KernelElf<'a> {
    /// Parses and validates `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.len() < ELF_HEADER_SIZE {
            return Err(ElfError::TooShort(bytes.len()));
        }
        if bytes[0..4] != *b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 {
            return Err(ElfError::NotElf64);
        }
        let kind = u16_at(bytes, 16);
        if kind != ET_EXEC && kind != ET_DYN {
            return Err(ElfError::WrongType(kind));
        }
        let machine = u16_at(bytes, 18);
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine(machine));
        }
        if u32_at(bytes, 20) != 1 {
            return Err(ElfError::NotElf64);
        }
        let entry = u64_at(bytes, 24);
        let header_offset = u64_at(bytes, 32);
        let header_size = u16_at(bytes, 54);
        let header_count = u16_at(bytes, 56);
        if usize::from(header_size) != PROGRAM_HEADER_SIZE {
            return Err(ElfError::BadProgramHeaderSize(header_size));
        }
        if header_count == 0 || usize::from(header_count) > MAX_PROGRAM_HEADERS {
            return Err(ElfError::BadProgramHeaderCount(header_count));
        }
        let table = file_range(
            bytes,
            header_offset,
            u64::from(header_count) * PROGRAM_HEADER_SIZE as u64,
        )
        .ok_or(ElfError::ProgramHeadersOutOfBounds)?;
        let table = &bytes[table];

        let mut elf = Self {
            bytes,
            entry,
            segments: [LoadSegment::EMPTY; MAX_LOAD_SEGMENTS],
            segment_count: 0,
            relocations: None,
        };
        let mut dynamic = None;
        for index in 0..usize::from(header_count) {
            let raw = &table[index * PROGRAM_HEADER_SIZE..(index + 1) * PROGRAM_HEADER_SIZE];
            let header = ProgramHeader {
                kind: u32_at(raw, 0),
                flags: u32_at(raw, 4),
                offset: u64_at(raw, 8),
                virtual_address: u64_at(raw, 16),
                file_size: u64_at(raw, 32),
                memory_size: u64_at(raw, 40),
            };
            match header.kind {
                PT_LOAD => elf.add_segment(index, &header)?,
                PT_DYNAMIC => {
                    dynamic = Some(
                        file_range(bytes, header.offset, header.file_size)
                            .ok_or(ElfError::BadDynamicSection)?,
                    )
                }
                PT_INTERP | PT_TLS => return Err(ElfError::ForbiddenSegment(header.kind)),
                // Notes, GNU_STACK, GNU_RELRO, PHDR and the like describe, they load nothing.
                _ => {}
            }
        }
        if elf.segment_count == 0 {
            return Err(ElfError::NoLoadSegments);
        }
        elf.check_layout()?;
        if let Some(range) = dynamic {
            elf.relocations = elf.parse_dynamic(&bytes[range])?;
        }
        Ok(elf)
    }

    fn add_segment(&mut self, index: usize, header: &ProgramHeader) -> Result<(), ElfError> {
        if header.memory_size == 0 {
            return Ok(());
        }
        if header.file_size > header.memory_size {
            return Err(ElfError::FileSizeExceedsMemorySize { index });
        }
        file_range(self.bytes, header.offset, header.file_size)
            .ok_or(ElfError::SegmentOutOfFile { index })?;
        let address = header.virtual_address;
        let in_range = address >= KERNEL_VIRTUAL_BASE
            && address
                .checked_add(header.memory_size)
                .and_then(|end| end.checked_next_multiple_of(PAGE_SIZE))
                .is_some();
        if !in_range {
            return Err(ElfError::SegmentAddressOutOfRange { index, address });
        }
        let permissions = match (header.flags & PF_W != 0, header.flags & PF_X != 0) {
            (true, true) => return Err(ElfError::WritableAndExecutable { index }),
            (true, false) => Permissions::ReadWrite,
            (false, true) => Permissions::ReadExecute,
            (false, false) => Permissions::ReadOnly,
        };
        if self.segment_count == MAX_LOAD_SEGMENTS {
            return Err(ElfError::TooManySegments);
        }
        self.segments[self.segment_count] = LoadSegment {
            virtual_address: address,
            memory_size: header.memory_size,
            file_offset: header.offset,
            file_size: header.file_size,
            permissions,
        };
        self.segment_count += 1;
        Ok(())
    }

    /// Sorts the segments by address and checks overlap, span and entry point.
    fn check_layout(&mut self) -> Result<(), ElfError> {
        let segments = &mut self.segments[..self.segment_count];
        segments.sort_unstable_by_key(|s| s.virtual_address);
        for (first, pair) in segments.windows(2).enumerate() {
            if pair[0].page_end() > pair[1].page_start() {
                return Err(ElfError::SegmentsOverlap {
                    first,
                    second: first + 1,
                });
            }
        }
        let span = self.virtual_end() - self.virtual_start();
        if span > MAX_KERNEL_SPAN {
            return Err(ElfError::SpanTooLarge(span));
        }
        let entry = self.entry;
        let executable = self.segments().iter().any(|s| {
            s.permissions == Permissions::ReadExecute
                && entry >= s.virtual_address
                && entry - s.virtual_address < s.file_size
        });
        if !executable {
            return Err(ElfError::EntryNotExecutable(entry));
        }
        Ok(())
    }

    /// Reads the dynamic section; returns the RELA table's file offset and entry count.
    fn parse_dynamic(&self, dynamic: &[u8]) -> Result<Option<(u64, u64)>, ElfError> {
        let (mut rela, mut rela_size, mut rela_entry) = (None, 0u64, RELA_ENTRY_SIZE);
        let mut terminated = false;
        for entry in dynamic.chunks_exact(16) {
            let (tag, value) = (u64_at(entry, 0), u64_at(entry, 8));
            match tag {
                DT_NULL => {
                    terminated = true;
                    break;
                }
                DT_RELA => rela = Some(value),
                DT_RELASZ => rela_size = value,
                DT_RELAENT => rela_entry = value,
                DT_NEEDED => return Err(ElfError::UnsupportedDynamicTag(tag)),
                DT_RELSZ | DT_RELRSZ | DT_PLTRELSZ if value != 0 => {
                    return Err(ElfError::UnsupportedDynamicTag(tag));
                }
                _ => {}
            }
        }
        if !terminated {
            return Err(ElfError::BadDynamicSection);
        }
        if rela_size == 0 {
            return Ok(None);
        }
        let address = rela.ok_or(ElfError::BadRelocationTable)?;
        if rela_entry != RELA_ENTRY_SIZE || rela_size % RELA_ENTRY_SIZE != 0 {
            return Err(ElfError::BadRelocationTable);
        }
        let offset = self
            .file_offset_of(address, rela_size)
            .ok_or(ElfError::BadRelocationTable)?;
        let count = rela_size / RELA_ENTRY_SIZE;
        for index in 0..count {
            let (target, kind) = self.relocation(offset, index);
            if kind != R_X86_64_RELATIVE {
                return Err(ElfError::UnsupportedRelocation { index, kind });
            }
            if self.segment_containing(target, 8).is_none() {
                return Err(ElfError::RelocationOutOfRange {
                    index,
                    address: target,
                });
            }
        }
        Ok(Some((offset, count)))
    }

    /// Target address and type of relocation `index` (the table was bounds-checked).
    fn relocation(&self, table_offset: u64, index: u64) -> (u64, u32) {
        let at = (table_offset + index * RELA_ENTRY_SIZE) as usize;
        let info = u64_at(self.bytes, at + 8);
        // A RELATIVE relocation has no symbol: demanding a zero symbol index rejects the rest.
        let kind = if info >> 32 == 0 {
            info as u32
        } else {
            u32::MAX
        };
        (u64_at(self.bytes, at), kind)
    }

    fn segment_containing(&self, address: u64, size: u64) -> Option<&LoadSegment> {
        self.segments().iter().find(|s| {
            address >= s.virtual_address
                && address
                    .checked_add(size)
                    .is_some_and(|end| end <= s.virtual_address + s.memory_size)
        })
    }

    /// File offset of `[address, address + size)` when it lies in one segment's file bytes.
    fn file_offset_of(&self, address: u64, size: u64) -> Option<u64> {
        self.segments().iter().find_map(|s| {
            let end = address.checked_add(size)?;
            (address >= s.virtual_address && end <= s.virtual_address + s.file_size)
                .then(|| s.file_offset + (address - s.virtual_address))
        })
    }

    /// The validated `PT_LOAD` segments, sorted by address.
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments[..self.segment_count]
    }

    /// Virtual address of the entry point.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Number of `R_X86_64_RELATIVE` relocations that loading applies.
    pub fn relocation_count(&self) -> u64 {
        self.relocations.map_or(0, |(_, count)| count)
    }

    /// First page of the lowest segment.
    pub fn virtual_start(&self) -> u64 {
        self.segments[0].page_start()
    }

    /// One past the last page of the highest segment.
    pub fn virtual_end(&self) -> u64 {
        self.segments[self.segment_count - 1].page_end()
    }

    /// Bytes of physical memory the kernel needs: its whole virtual span, page-aligned.
    pub fn span(&self) -> u64 {
        self.virtual_end() - self.virtual_start()
    }

    /// Copies the segments into `destination` (which stands for `[virtual_start, virtual_end)`),
    /// zeroes everything else (`.bss` and the gaps) and applies the relocations.
    pub fn load_into(&self, destination: &mut [u8]) -> Result<(), ElfError> {
        if destination.len() as u64 != self.span() {
            return Err(ElfError::DestinationSize {
                expected: self.span(),
                actual: destination.len(),
            });
        }
        destination.fill(0);
        let base = self.virtual_start();
        for segment in self.segments() {
            let at = (segment.virtual_address - base) as usize;
            let source =
                segment.file_offset as usize..(segment.file_offset + segment.file_size) as usize;
            destination[at..at + source.len()].copy_from_slice(&self.bytes[source]);
        }
        if let Some((offset, count)) = self.relocations {
            for index in 0..count {
                let (target, _) = self.relocation(offset, index);
                let addend_at = (offset + index * RELA_ENTRY_SIZE + 16) as usize;
                let addend = u64_at(self.bytes, addend_at);
                let at = (target - base) as usize;
                destination[at..at + 8].copy_from_slice(&addend.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// Test-only builder of small kernel ELFs (also used by the image packer's tests).
#[cfg(any(test, feature = "test-elf"))]
pub mod test_elf {
    use alloc::vec::Vec;

    /// One segment for [`build`]: type, flags, virtual address, file bytes, memory size.
    #[derive(Clone, Debug)]
    pub struct Segment {
        /// `p_type`.
        pub kind: u32,
        /// `p_flags` (R=4, W=2, X=1).
        pub flags: u32,
        /// `p_vaddr`.
        pub virtual_address: u64,
        /// The segment's file contents.
        pub data: Vec<u8>,
        /// `p_memsz`.
        pub memory_size: u64,
    }

    impl Segment {
        /// A `PT_LOAD` segment whose memory size is its data length plus `bss`.
        pub fn load(flags: u32, virtual_address: u64, data: &[u8], bss: u64) -> Self {
            Self {
                kind: super::PT_LOAD,
                flags,
                virtual_address,
                data: data.to_vec(),
                memory_size: data.len() as u64 + bss,
            }
        }
    }

    /// Builds an `ET_EXEC` x86-64 ELF with the given segments and entry point. Segment data is
    /// laid out after the headers, each at a page-aligned file offset.
    pub fn build(entry: u64, segments: &[Segment]) -> Vec<u8> {
        let header_end = 64 + 56 * segments.len();
        let mut offsets = Vec::new();
        let mut cursor = header_end.next_multiple_of(0x1000);
        for segment in segments {
            offsets.push(cursor);
            cursor = (cursor + segment.data.len()).next_multiple_of(0x1000);
        }
        let mut out = alloc::vec![0u8; cursor];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (index, (segment, offset)) in segments.iter().zip(&offsets).enumerate() {
            let at = 64 + 56 * index;
            let header = &mut out[at..at + 56];
            header[0..4].copy_from_slice(&segment.kind.to_le_bytes());
            header[4..8].copy_from_slice(&segment.flags.to_le_bytes());
            header[8..16].copy_from_slice(&(*offset as u64).to_le_bytes());
            header[16..24].copy_from_slice(&segment.virtual_address.to_le_bytes());
            header[24..32].copy_from_slice(&segment.virtual_address.to_le_bytes());
            header[32..40].copy_from_slice(&(segment.data.len() as u64).to_le_bytes());
            header[40..48].copy_from_slice(&segment.memory_size.to_le_bytes());
            header[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
            out[*offset..*offset + segment.data.len()].copy_from_slice(&segment.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_elf::{Segment, build};
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    const BASE: u64 = KERNEL_VIRTUAL_BASE;
    const R: u32 = 4;
    const RW: u32 = 6;
    const RX: u32 = 5;

    fn typical() -> Vec<Segment> {
        vec![
            Segment::load(RX, BASE, &[0x90, 0xF4, 0xEB, 0xFD], 0),
            Segment::load(R, BASE + 0x1000, b"rodata", 0),
            Segment::load(RW, BASE + 0x2000, b"data", 0x3000),
        ]
    }

    fn header_field(elf: &mut [u8], index: usize, at: usize, value: u64) {
        let start = 64 + 56 * index + at;
        elf[start..start + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn loads_a_typical_kernel() {
        let bytes = build(BASE + 1, &typical());
        let elf = KernelElf::parse(&bytes).unwrap();
        assert_eq!(elf.entry(), BASE + 1);
        assert_eq!(elf.segments().len(), 3);
        assert_eq!(elf.virtual_start(), BASE);
        assert_eq!(elf.span(), 0x6000);
        let perms: Vec<_> = elf.segments().iter().map(|s| s.permissions).collect();
        assert_eq!(
            perms,
            [
                Permissions::ReadExecute,
                Permissions::ReadOnly,
                Permissions::ReadWrite
            ]
        );

        let mut memory = vec![0xAAu8; 0x6000];
        elf.load_into(&mut memory).unwrap();
        assert_eq!(&memory[..4], &[0x90, 0xF4, 0xEB, 0xFD]);
        assert!(memory[4..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&memory[0x1000..0x1006], b"rodata");
        assert_eq!(&memory[0x2000..0x2004], b"data");
        assert!(
            memory[0x2004..].iter().all(|&b| b == 0),
            "bss must be zeroed"
        );
        assert!(matches!(
            elf.load_into(&mut memory[..10]),
            Err(ElfError::DestinationSize { .. })
        ));
    }

    #[test]
    fn refuses_writable_executable_segments() {
        let bytes = build(BASE, &[Segment::load(7, BASE, &[0xC3], 0)]);
        assert_eq!(
            KernelElf::parse(&bytes).unwrap_err(),
            ElfError::WritableAndExecutable { index: 0 }
        );
    }

    #[test]
    fn refuses_overlapping_and_page_sharing_segments() {
        let mut segments = typical();
        segments[1].virtual_address = BASE + 0x800; // shares the text page
        let bytes = build(BASE, &segments);
        assert!(matches!(
            KernelElf::parse(&bytes),
            Err(ElfError::SegmentsOverlap { .. })
        ));

        let mut segments = typical();
        segments[2].memory_size = 0x10_0000; // reaches back over nothing, but ...
        segments[1].virtual_address = BASE + 0x3000; // ... now rodata sits inside the bss
        let bytes = build(BASE, &segments);
        assert!(matches!(
            KernelElf::parse(&bytes),
            Err(ElfError::SegmentsOverlap { .. })
        ));
    }

    #[test]
    fn refuses_out_of_bounds_file_ranges() {
        let mut bytes = build(BASE, &typical());
        header_field(&mut bytes, 1, 8, 0xFFFF_0000); // p_offset far past the end
        assert_eq!(
            KernelElf::parse(&bytes).unwrap_err(),
            ElfError::SegmentOutOfFile { index: 1 }
        );

        let mut bytes = build(BASE, &typical());
        header_field(&mut bytes, 1, 8, u64::MAX - 2); // p_offset + p_filesz overflows
        assert_eq!(
            KernelElf::parse(&bytes).unwrap_err(),
            ElfError::SegmentOutOfFile { index: 1 }
        );

        let mut bytes = build(BASE, &typical());
        bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
        assert_eq!(
            KernelElf::parse(&bytes).unwrap_err(),
            ElfError::ProgramHeadersOutOfBounds
        );

        let mut bytes = build(BASE, &typical());
        header_field(&mut bytes, 2, 32, 0x10_0000); // p_filesz > p_memsz
        assert_eq!(
            KernelElf::parse(&bytes).unwrap_err(),
            ElfError::FileSizeExceedsMemorySize { index: 2 }
        );
    }

    #[test]
    fn refuses_address_overflow_and_low_addresses() {
        let mut bytes = build(BASE, &typical());
        header_field(&mut bytes, 2, 16, u64::MAX - 0x10); // p_vaddr + p_memsz wraps
        assert!(matches!(
            KernelElf::parse(&bytes),
            Err(ElfError::SegmentAddressOutOfRange { index: 2, .. })
        ));
        let low = build(0x20_0000, &[Segment::load(RX, 0x20_0000, &[0xC3], 0)]);
        assert!(matches!(
            KernelElf::parse(&low),
            Err(ElfError::SegmentAddressOutOfRange { index: 0, .. })
        ));
        let huge = build(BASE, &[Segment::load(RX, BASE, &[0xC3], MAX_KERNEL_SPAN)]);
        assert!(matches!(
            KernelElf::parse(&huge),
            Err(ElfError::SpanTooLarge(_))
        ));
    }

    #[test]
    fn refuses_bad_headers_and_entry_points() {
        assert_eq!(
            KernelElf::parse(&[0u8; 10]).unwrap_err(),
            ElfError::TooShort(10)
        );
        let good = build(BASE, &typical());
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(KernelElf::parse(&bad).unwrap_err(), ElfError::NotElf64);
        let mut bad = good.clone();
        bad[18] = 3;
        assert_eq!(
            KernelElf::parse(&bad).unwrap_err(),
            ElfError::WrongMachine(3)
        );
        let mut bad = good.clone();
        bad[16] = 1;
        assert_eq!(KernelElf::parse(&bad).unwrap_err(), ElfError::WrongType(1));
        let mut bad = good.clone();
        bad[56..58].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            KernelElf::parse(&bad).unwrap_err(),
            ElfError::BadProgramHeaderCount(0)
        );
        let mut bad = good.clone();
        bad[54] = 32;
        assert_eq!(
            KernelElf::parse(&bad).unwrap_err(),
            ElfError::BadProgramHeaderSize(32)
        );
        // Entry in the data segment, and entry past the text's file bytes.
        for entry in [BASE + 0x2000, BASE + 4] {
            let bytes = build(entry, &typical());
            assert_eq!(
                KernelElf::parse(&bytes).unwrap_err(),
                ElfError::EntryNotExecutable(entry)
            );
        }
        let interp = build(
            BASE,
            &[
                typical()[0].clone(),
                Segment {
                    kind: PT_INTERP,
                    ..typical()[1].clone()
                },
            ],
        );
        assert_eq!(
            KernelElf::parse(&interp).unwrap_err(),
            ElfError::ForbiddenSegment(PT_INTERP)
        );
        let none = build(
            BASE,
            &[Segment {
                kind: 4,
                ..typical()[0].clone()
            }],
        );
        assert_eq!(
            KernelElf::parse(&none).unwrap_err(),
            ElfError::NoLoadSegments
        );
    }

    fn dynamic_entries(entries: &[(u64, u64)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect()
    }

    fn rela(offset: u64, kind: u64, addend: u64) -> Vec<u8> {
        [offset, kind, addend]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// A static PIE: data segment holds a pointer slot, a RELA table and the dynamic section.
    fn pie(relocations: &[Vec<u8>], extra_dynamic: &[(u64, u64)]) -> Vec<u8> {
        let data_base = BASE + 0x2000;
        let table_at = 0x100u64;
        let mut data = vec![0u8; table_at as usize];
        for r in relocations {
            data.extend_from_slice(r);
        }
        let dynamic_at = data.len() as u64;
        let mut dynamic = vec![
            (DT_RELA, data_base + table_at),
            (DT_RELASZ, 24 * relocations.len() as u64),
            (DT_RELAENT, 24),
        ];
        dynamic.extend_from_slice(extra_dynamic);
        dynamic.push((DT_NULL, 0));
        let dynamic = dynamic_entries(&dynamic);
        data.extend_from_slice(&dynamic);
        let mut segments = typical();
        segments[2] = Segment::load(RW, data_base, &data, 0x1000);
        let mut bytes = build(BASE, &segments);
        bytes[16] = ET_DYN as u8;
        // A PT_DYNAMIC header replaces nothing: append it by rebuilding with four headers.
        let data_offset = u64_at(&bytes, 64 + 56 * 2 + 8);
        let mut with_dynamic = segments.clone();
        with_dynamic.push(Segment {
            kind: PT_DYNAMIC,
            flags: RW,
            virtual_address: data_base + dynamic_at,
            data: dynamic.clone(),
            memory_size: dynamic.len() as u64,
        });
        let mut bytes = build(BASE, &with_dynamic);
        bytes[16] = ET_DYN as u8;
        // Point PT_DYNAMIC at the copy inside the data segment, as a linker would.
        let data_offset_now = u64_at(&bytes, 64 + 56 * 2 + 8);
        assert_eq!(data_offset, data_offset_now);
        header_field(&mut bytes, 3, 8, data_offset_now + dynamic_at);
        bytes
    }

    #[test]
    fn applies_relative_relocations_of_a_static_pie() {
        let target = BASE + 0x2010;
        let bytes = pie(
            &[rela(target, R_X86_64_RELATIVE as u64, BASE + 0x1000)],
            &[],
        );
        let elf = KernelElf::parse(&bytes).unwrap();
        assert_eq!(elf.relocation_count(), 1);
        let mut memory = vec![0u8; elf.span() as usize];
        elf.load_into(&mut memory).unwrap();
        assert_eq!(u64_at(&memory, 0x2010), BASE + 0x1000);
    }

    #[test]
    fn refuses_foreign_or_stray_relocations() {
        let absolute = pie(&[rela(BASE + 0x2010, 1 | (5 << 32), 0)], &[]);
        assert!(matches!(
            KernelElf::parse(&absolute),
            Err(ElfError::UnsupportedRelocation { index: 0, .. })
        ));
        let stray = pie(&[rela(BASE + 0x10_0000, R_X86_64_RELATIVE as u64, 0)], &[]);
        assert!(matches!(
            KernelElf::parse(&stray),
            Err(ElfError::RelocationOutOfRange { index: 0, .. })
        ));
        let needs_library = pie(&[], &[(DT_NEEDED, 1)]);
        assert_eq!(
            KernelElf::parse(&needs_library).unwrap_err(),
            ElfError::UnsupportedDynamicTag(DT_NEEDED)
        );
        let mut outside = pie(&[rela(BASE + 0x2010, R_X86_64_RELATIVE as u64, 0)], &[]);
        // Make DT_RELA point outside every segment.
        let dynamic_offset = u64_at(&outside, 64 + 56 * 3 + 8) as usize;
        outside[dynamic_offset + 8..dynamic_offset + 16]
            .copy_from_slice(&(BASE + 0x9000).to_le_bytes());
        assert_eq!(
            KernelElf::parse(&outside).unwrap_err(),
            ElfError::BadRelocationTable
        );
    }
}
