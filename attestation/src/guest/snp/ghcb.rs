//! The GHCB page (GHCB spec 56421 §2.3.2, table 3): a shared 4 KiB page through which the
//! guest hands the hypervisor the state one VMGEXIT needs and gets results back.
//!
//! The page is host-writable, so nothing here ever holds a reference into it: every access goes
//! through [`GhcbMemory`], which the kernel implements with volatile reads and writes of the
//! shared page (and the tests with a plain array). After an exit, a value counts only if the
//! hypervisor set its bit in the valid bitmap; every value read is treated as untrusted.

use core::fmt;

/// One field of the GHCB save area, named by its byte offset (a multiple of 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field(u16);

impl Field {
    pub const RAX: Self = Self(0x1F8);
    pub const RCX: Self = Self(0x308);
    pub const RDX: Self = Self(0x310);
    pub const RBX: Self = Self(0x318);
    pub const SW_EXIT_CODE: Self = Self(0x390);
    pub const SW_EXIT_INFO_1: Self = Self(0x398);
    pub const SW_EXIT_INFO_2: Self = Self(0x3A0);
    pub const SW_SCRATCH: Self = Self(0x3A8);
    pub const XCR0: Self = Self(0x3E8);

    /// Byte offset in the page.
    pub const fn offset(self) -> usize {
        self.0 as usize
    }

    /// Its bit in the valid bitmap (one bit per quadword of the save area).
    pub const fn valid_bit(self) -> usize {
        self.0 as usize / 8
    }
}

/// Offset of the 16-byte valid bitmap.
pub const VALID_BITMAP: usize = 0x3F0;
/// Offset and size of the shared buffer (used for MMIO data).
pub const SHARED_BUFFER: usize = 0x800;
pub const SHARED_BUFFER_SIZE: usize = 0x7F0;
/// Offset of the protocol version (u16) and the GHCB usage (u32).
pub const PROTOCOL_VERSION_OFFSET: usize = 0xFFA;
pub const USAGE_OFFSET: usize = 0xFFC;

/// SW_EXITCODEs (AMD APM vol. 2 appendix C and GHCB spec table 7) Ward uses.
pub mod exit_code {
    pub const CPUID: u64 = 0x72;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const MMIO_READ: u64 = 0x8000_0001;
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    pub const SNP_GUEST_REQUEST: u64 = 0x8000_0011;
}

/// Access to the GHCB page. Implementations must not create references into the shared page.
pub trait GhcbMemory {
    fn read_u64(&self, offset: usize) -> u64;
    fn write_u64(&mut self, offset: usize, value: u64);
    fn read_u8(&self, offset: usize) -> u8;
    fn write_u8(&mut self, offset: usize, value: u8);
}

/// What went wrong with an exit, as far as the GHCB tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbError {
    /// The hypervisor did not mark a result field valid.
    NotValid(Field),
    /// The hypervisor reported an error: SW_EXITINFO1 low half 1, SW_EXITINFO2 says what.
    Hypervisor { info2: u64 },
    /// SW_EXITINFO1 holds an undefined status.
    BadStatus(u64),
    /// An MMIO access larger than the shared buffer or of a size no instruction makes.
    BadMmioSize(usize),
}

impl fmt::Display for GhcbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotValid(field) => {
                write!(
                    f,
                    "GHCB field at {:#x} not marked valid by the hypervisor",
                    field.offset()
                )
            }
            Self::Hypervisor { info2 } => write!(f, "hypervisor refused the exit ({info2:#x})"),
            Self::BadStatus(info1) => write!(f, "undefined GHCB exit status {info1:#x}"),
            Self::BadMmioSize(len) => write!(f, "MMIO access of {len} bytes"),
        }
    }
}

/// A GHCB page at guest-physical address `gpa`, accessed through `memory`.
pub struct Ghcb<M> {
    memory: M,
    gpa: u64,
}

impl<M: GhcbMemory> Ghcb<M> {
    pub fn new(memory: M, gpa: u64) -> Self {
        Self { memory, gpa }
    }

    /// Starts a new exit: clears the save area's valid bitmap and the fields Ward uses, and
    /// sets protocol version and usage.
    pub fn begin(&mut self) {
        for field in [
            Field::RAX,
            Field::RCX,
            Field::RDX,
            Field::RBX,
            Field::SW_EXIT_CODE,
            Field::SW_EXIT_INFO_1,
            Field::SW_EXIT_INFO_2,
            Field::SW_SCRATCH,
            Field::XCR0,
        ] {
            self.memory.write_u64(field.offset(), 0);
        }
        self.memory.write_u64(VALID_BITMAP, 0);
        self.memory.write_u64(VALID_BITMAP + 8, 0);
        let version = super::ghcb_msr::PROTOCOL_VERSION.to_le_bytes();
        self.memory.write_u8(PROTOCOL_VERSION_OFFSET, version[0]);
        self.memory
            .write_u8(PROTOCOL_VERSION_OFFSET + 1, version[1]);
        for i in 0..4 {
            self.memory.write_u8(USAGE_OFFSET + i, 0);
        }
    }

    fn is_valid(&self, field: Field) -> bool {
        let bit = field.valid_bit();
        let word = self.memory.read_u64(VALID_BITMAP + (bit / 64) * 8);
        word & (1 << (bit % 64)) != 0
    }

    /// Writes `value` to `field` and marks it valid.
    pub fn set(&mut self, field: Field, value: u64) {
        self.memory.write_u64(field.offset(), value);
        let bit = field.valid_bit();
        let at = VALID_BITMAP + (bit / 64) * 8;
        let word = self.memory.read_u64(at);
        self.memory.write_u64(at, word | (1 << (bit % 64)));
    }

    /// Reads `field` after an exit; an error unless the hypervisor marked it valid.
    pub fn get(&self, field: Field) -> Result<u64, GhcbError> {
        if !self.is_valid(field) {
            return Err(GhcbError::NotValid(field));
        }
        Ok(self.memory.read_u64(field.offset()))
    }

    fn set_exit(&mut self, code: u64, info1: u64, info2: u64) {
        self.set(Field::SW_EXIT_CODE, code);
        self.set(Field::SW_EXIT_INFO_1, info1);
        self.set(Field::SW_EXIT_INFO_2, info2);
    }

    /// After VMGEXIT: the exit's status (SW_EXITINFO1[31:0]: 0 done, 1 error in SW_EXITINFO2).
    pub fn check_status(&self) -> Result<(), GhcbError> {
        let info1 = self.get(Field::SW_EXIT_INFO_1)?;
        match info1 & 0xFFFF_FFFF {
            0 => Ok(()),
            1 => Err(GhcbError::Hypervisor {
                info2: self.memory.read_u64(Field::SW_EXIT_INFO_2.offset()),
            }),
            _ => Err(GhcbError::BadStatus(info1)),
        }
    }

    /// Prepares a CPUID exit for leaf `eax`, sub-leaf `ecx` with the current XCR0.
    pub fn prepare_cpuid(&mut self, eax: u32, ecx: u32, xcr0: u64) {
        self.begin();
        self.set(Field::RAX, eax.into());
        self.set(Field::RCX, ecx.into());
        self.set(Field::XCR0, xcr0);
        self.set_exit(exit_code::CPUID, 0, 0);
    }

    /// The CPUID result `[eax, ebx, ecx, edx]` (host-provided: the caller must not trust
    /// it for anything the validated CPUID page covers).
    pub fn cpuid_result(&self) -> Result<[u32; 4], GhcbError> {
        self.check_status()?;
        Ok([
            self.get(Field::RAX)? as u32,
            self.get(Field::RBX)? as u32,
            self.get(Field::RCX)? as u32,
            self.get(Field::RDX)? as u32,
        ])
    }

    /// Prepares an IOIO exit (`info1` from [`ioio_exit_info`]); `rax` holds the value of OUT.
    pub fn prepare_ioio(&mut self, info1: u64, rax: u64) {
        self.begin();
        self.set(Field::RAX, rax);
        self.set_exit(exit_code::IOIO, info1, 0);
    }

    /// The value an IN returned (in RAX).
    pub fn ioio_in_result(&self) -> Result<u64, GhcbError> {
        self.check_status()?;
        self.get(Field::RAX)
    }

    /// Prepares an MSR exit: RDMSR of `msr`, or WRMSR of `msr` with `value`.
    pub fn prepare_msr(&mut self, msr: u32, write: Option<u64>) {
        self.begin();
        self.set(Field::RCX, msr.into());
        match write {
            Some(value) => {
                self.set(Field::RAX, value & 0xFFFF_FFFF);
                self.set(Field::RDX, value >> 32);
                self.set_exit(exit_code::MSR, 1, 0);
            }
            None => self.set_exit(exit_code::MSR, 0, 0),
        }
    }

    /// The value RDMSR returned (EDX:EAX).
    pub fn rdmsr_result(&self) -> Result<u64, GhcbError> {
        self.check_status()?;
        let low = self.get(Field::RAX)? & 0xFFFF_FFFF;
        let high = self.get(Field::RDX)? & 0xFFFF_FFFF;
        Ok((high << 32) | low)
    }

    fn check_mmio_len(len: usize) -> Result<(), GhcbError> {
        if matches!(len, 1 | 2 | 4 | 8) {
            Ok(())
        } else {
            Err(GhcbError::BadMmioSize(len))
        }
    }

    /// Prepares an MMIO read of `len` bytes at `gpa` into the shared buffer.
    pub fn prepare_mmio_read(&mut self, gpa: u64, len: usize) -> Result<(), GhcbError> {
        Self::check_mmio_len(len)?;
        self.begin();
        self.set(Field::SW_SCRATCH, self.gpa + SHARED_BUFFER as u64);
        self.set_exit(exit_code::MMIO_READ, gpa, len as u64);
        Ok(())
    }

    /// The bytes an MMIO read returned, zero-extended to 64 bits.
    pub fn mmio_read_result(&self, len: usize) -> Result<u64, GhcbError> {
        Self::check_mmio_len(len)?;
        self.check_status()?;
        let mut value = 0u64;
        for i in 0..len {
            value |= u64::from(self.memory.read_u8(SHARED_BUFFER + i)) << (8 * i);
        }
        Ok(value)
    }

    /// Prepares an MMIO write of the low `len` bytes of `value` at `gpa`.
    pub fn prepare_mmio_write(
        &mut self,
        gpa: u64,
        len: usize,
        value: u64,
    ) -> Result<(), GhcbError> {
        Self::check_mmio_len(len)?;
        self.begin();
        for i in 0..len {
            self.memory
                .write_u8(SHARED_BUFFER + i, (value >> (8 * i)) as u8);
        }
        self.set(Field::SW_SCRATCH, self.gpa + SHARED_BUFFER as u64);
        self.set_exit(exit_code::MMIO_WRITE, gpa, len as u64);
        Ok(())
    }

    /// Prepares SNP_GUEST_REQUEST with the (shared) request and response pages.
    pub fn prepare_guest_request(&mut self, request_gpa: u64, response_gpa: u64) {
        self.begin();
        self.set_exit(exit_code::SNP_GUEST_REQUEST, request_gpa, response_gpa);
    }

    /// SNP_GUEST_REQUEST's outcome: SW_EXITINFO2 is 0 on success, else the hypervisor error in
    /// bits 63:32 and the firmware error in bits 31:0.
    pub fn guest_request_result(&self) -> Result<(), GhcbError> {
        self.check_status()?;
        let info2 = self.get(Field::SW_EXIT_INFO_2)?;
        if info2 != 0 {
            return Err(GhcbError::Hypervisor { info2 });
        }
        Ok(())
    }

    /// Gives back the memory accessor.
    pub fn into_inner(self) -> M {
        self.memory
    }
}

/// Direction of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDirection {
    In,
    Out,
}

/// SW_EXITINFO1 of an IOIO exit for a non-string, non-REP access of `size` bytes (1, 2 or 4) to
/// `port` (AMD APM vol. 2 §15.10.2, "IOIO intercept information").
pub fn ioio_exit_info(port: u16, size: u8, direction: PortDirection) -> Option<u64> {
    let size_bit = match size {
        1 => 1 << 4,
        2 => 1 << 5,
        4 => 1 << 6,
        _ => return None,
    };
    let type_bit = match direction {
        PortDirection::In => 1,
        PortDirection::Out => 0,
    };
    // Address size: 16-bit (bit 7) is what IN/OUT without a string operand reports.
    Some((u64::from(port) << 16) | size_bit | (1 << 7) | type_bit)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GHCB page in ordinary memory, with a hypervisor side for the tests.
    pub(crate) struct PageMemory(pub [u8; 4096]);

    impl GhcbMemory for &mut PageMemory {
        fn read_u64(&self, offset: usize) -> u64 {
            u64::from_le_bytes(self.0[offset..offset + 8].try_into().unwrap())
        }
        fn write_u64(&mut self, offset: usize, value: u64) {
            self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        fn read_u8(&self, offset: usize) -> u8 {
            self.0[offset]
        }
        fn write_u8(&mut self, offset: usize, value: u8) {
            self.0[offset] = value;
        }
    }

    fn field_valid(page: &PageMemory, field: Field) -> bool {
        let bit = field.valid_bit();
        page.0[VALID_BITMAP + bit / 8] & (1 << (bit % 8)) != 0
    }

    fn hv_write(page: &mut PageMemory, field: Field, value: u64) {
        let off = field.offset();
        page.0[off..off + 8].copy_from_slice(&value.to_le_bytes());
        let bit = field.valid_bit();
        page.0[VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }

    fn hv_read(page: &PageMemory, field: Field) -> u64 {
        u64::from_le_bytes(
            page.0[field.offset()..field.offset() + 8]
                .try_into()
                .unwrap(),
        )
    }

    /// The hypervisor's side of an exit: clears the bitmap and marks what it returns.
    fn hv_clear(page: &mut PageMemory) {
        page.0[VALID_BITMAP..VALID_BITMAP + 16].fill(0);
    }

    #[test]
    fn valid_bits_match_the_spec_table() {
        // GHCB spec table 3: RAX is qword 63, RCX..RBX 97..99, SW_EXITCODE 114, XCR0 125.
        assert_eq!(Field::RAX.valid_bit(), 63);
        assert_eq!(Field::RCX.valid_bit(), 97);
        assert_eq!(Field::RDX.valid_bit(), 98);
        assert_eq!(Field::RBX.valid_bit(), 99);
        assert_eq!(Field::SW_EXIT_CODE.valid_bit(), 114);
        assert_eq!(Field::SW_EXIT_INFO_1.valid_bit(), 115);
        assert_eq!(Field::SW_EXIT_INFO_2.valid_bit(), 116);
        assert_eq!(Field::SW_SCRATCH.valid_bit(), 117);
        assert_eq!(Field::XCR0.valid_bit(), 125);
    }

    #[test]
    fn cpuid_exit_round_trip() {
        let mut page = PageMemory([0xAA; 4096]);
        let mut ghcb = Ghcb::new(&mut page, 0x10_0000);
        ghcb.prepare_cpuid(0x8000_0008, 0, 7);
        ghcb.into_inner();
        assert!(field_valid(&page, Field::RAX));
        assert!(field_valid(&page, Field::RCX));
        assert!(field_valid(&page, Field::XCR0));
        assert!(!field_valid(&page, Field::RBX));
        assert_eq!(hv_read(&page, Field::SW_EXIT_CODE), exit_code::CPUID);
        assert_eq!(hv_read(&page, Field::RAX), 0x8000_0008);
        assert_eq!(&page.0[PROTOCOL_VERSION_OFFSET..], &[2, 0, 0, 0, 0, 0]);

        // Hypervisor answers but forgets to mark RBX valid: refused.
        hv_clear(&mut page);
        hv_write(&mut page, Field::SW_EXIT_INFO_1, 0);
        for (f, v) in [(Field::RAX, 0x3030), (Field::RCX, 0), (Field::RDX, 0)] {
            hv_write(&mut page, f, v);
        }
        let ghcb = Ghcb::new(&mut page, 0x10_0000);
        assert_eq!(ghcb.cpuid_result(), Err(GhcbError::NotValid(Field::RBX)));
        ghcb.into_inner();
        hv_write(&mut page, Field::RBX, 0x11);
        let ghcb = Ghcb::new(&mut page, 0x10_0000);
        assert_eq!(ghcb.cpuid_result(), Ok([0x3030, 0x11, 0, 0]));
    }

    #[test]
    fn exit_status_is_checked() {
        let mut page = PageMemory([0; 4096]);
        hv_write(&mut page, Field::SW_EXIT_INFO_1, 1);
        hv_write(&mut page, Field::SW_EXIT_INFO_2, 0x8000_0306);
        let ghcb = Ghcb::new(&mut page, 0);
        assert_eq!(
            ghcb.check_status(),
            Err(GhcbError::Hypervisor { info2: 0x8000_0306 })
        );
        ghcb.into_inner();
        hv_write(&mut page, Field::SW_EXIT_INFO_1, 5);
        assert_eq!(
            Ghcb::new(&mut page, 0).check_status(),
            Err(GhcbError::BadStatus(5))
        );
        hv_clear(&mut page);
        assert_eq!(
            Ghcb::new(&mut page, 0).check_status(),
            Err(GhcbError::NotValid(Field::SW_EXIT_INFO_1))
        );
    }

    #[test]
    fn msr_and_ioio_and_mmio() {
        let mut page = PageMemory([0; 4096]);
        let mut ghcb = Ghcb::new(&mut page, 0x20_0000);
        ghcb.prepare_msr(0xC000_0080, Some(0x1_0000_0D01));
        ghcb.into_inner();
        assert_eq!(hv_read(&page, Field::SW_EXIT_INFO_1), 1);
        assert_eq!(hv_read(&page, Field::RAX), 0xD01);
        assert_eq!(hv_read(&page, Field::RDX), 1);

        let mut ghcb = Ghcb::new(&mut page, 0x20_0000);
        ghcb.prepare_msr(0x1B, None);
        ghcb.into_inner();
        hv_clear(&mut page);
        hv_write(&mut page, Field::SW_EXIT_INFO_1, 0);
        hv_write(&mut page, Field::RAX, 0xFFFF_FFFF_FEE0_0900);
        hv_write(&mut page, Field::RDX, 0x1);
        assert_eq!(Ghcb::new(&mut page, 0).rdmsr_result(), Ok(0x1_FEE0_0900));

        // OUT DX, AL to 0x3F8; IN EAX, DX from 0xCFC.
        assert_eq!(
            ioio_exit_info(0x3F8, 1, PortDirection::Out),
            Some(0x03F8_0090)
        );
        assert_eq!(
            ioio_exit_info(0xCFC, 4, PortDirection::In),
            Some(0x0CFC_00C1)
        );
        assert_eq!(ioio_exit_info(0xCFC, 8, PortDirection::In), None);

        let mut ghcb = Ghcb::new(&mut page, 0x20_0000);
        ghcb.prepare_mmio_write(0xFEB0_0000, 4, 0xDDCC_BBAA)
            .unwrap();
        assert_eq!(ghcb.prepare_mmio_read(0, 3), Err(GhcbError::BadMmioSize(3)));
        ghcb.into_inner();
        ghcb_mmio_checks(&mut page);
    }

    fn ghcb_mmio_checks(page: &mut PageMemory) {
        assert_eq!(
            &page.0[SHARED_BUFFER..SHARED_BUFFER + 4],
            &[0xAA, 0xBB, 0xCC, 0xDD]
        );
        assert_eq!(hv_read(page, Field::SW_SCRATCH), 0x20_0800);
        assert_eq!(hv_read(page, Field::SW_EXIT_CODE), exit_code::MMIO_WRITE);
        assert_eq!(hv_read(page, Field::SW_EXIT_INFO_2), 4);
        let mut ghcb = Ghcb::new(&mut *page, 0x20_0000);
        ghcb.prepare_mmio_read(0xFEB0_0010, 2).unwrap();
        ghcb.into_inner();
        page.0[SHARED_BUFFER..SHARED_BUFFER + 8].copy_from_slice(&[0x34, 0x12, 9, 9, 9, 9, 9, 9]);
        hv_clear(page);
        hv_write(page, Field::SW_EXIT_INFO_1, 0);
        assert_eq!(Ghcb::new(&mut *page, 0).mmio_read_result(2), Ok(0x1234));
    }

    #[test]
    fn guest_request_errors_are_surfaced() {
        let mut page = PageMemory([0; 4096]);
        let mut ghcb = Ghcb::new(&mut page, 0);
        ghcb.prepare_guest_request(0x30_0000, 0x30_1000);
        ghcb.into_inner();
        assert_eq!(
            hv_read(&page, Field::SW_EXIT_CODE),
            exit_code::SNP_GUEST_REQUEST
        );
        hv_clear(&mut page);
        hv_write(&mut page, Field::SW_EXIT_INFO_1, 0);
        hv_write(&mut page, Field::SW_EXIT_INFO_2, 2 << 32);
        assert_eq!(
            Ghcb::new(&mut page, 0).guest_request_result(),
            Err(GhcbError::Hypervisor { info2: 2 << 32 })
        );
        hv_write(&mut page, Field::SW_EXIT_INFO_2, 0);
        assert_eq!(Ghcb::new(&mut page, 0).guest_request_result(), Ok(()));
    }
}
