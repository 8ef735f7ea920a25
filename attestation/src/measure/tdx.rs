//! The TDX `MRTD`: a SHA-384 over the build-time operations on the TD (TDX Module ABI,
//! `TDH.MEM.PAGE.ADD` and `TDH.MR.EXTEND`). QEMU adds every TDVF section of the image page by
//! page; after each page it extends the page's 16 chunks of 256 bytes into MRTD when the section
//! has the `MR.EXTEND` attribute (the KVM `KVM_TDX_INIT_MEM_REGION` order). Sections with
//! `PAGE.AUG` are added after launch and not measured.
//!
//! Each `PAGE.ADD` hashes a 128-byte block: "MEM.PAGE.ADD" then the page's GPA at byte 16.
//! Each `MR.EXTEND` hashes a 128-byte block "MR.EXTEND" with the chunk's GPA at byte 16,
//! followed by the chunk's 256 bytes.

use super::firmware::{Firmware, TDVF_ATTRIBUTE_MR_EXTEND, TDVF_ATTRIBUTE_PAGE_AUG};
use super::{MeasureError, PAGE_SIZE};
use sha2::{Digest, Sha384};

const CHUNK: usize = 256;

/// The running MRTD hash.
#[derive(Debug, Clone, Default)]
pub struct Mrtd {
    hash: Sha384,
}

impl Mrtd {
    pub fn new() -> Self {
        Self::default()
    }

    fn block(operation: &[u8], gpa: u64) -> [u8; 128] {
        let mut block = [0u8; 128];
        block[..operation.len()].copy_from_slice(operation);
        block[16..24].copy_from_slice(&gpa.to_le_bytes());
        block
    }

    pub fn page_add(&mut self, gpa: u64) {
        self.hash.update(Self::block(b"MEM.PAGE.ADD", gpa));
    }

    pub fn extend(&mut self, gpa: u64, chunk: &[u8; CHUNK]) {
        self.hash.update(Self::block(b"MR.EXTEND", gpa));
        self.hash.update(chunk);
    }

    pub fn finish(self) -> [u8; 48] {
        self.hash.finalize().into()
    }
}

/// The MRTD of `image` launched by QEMU as a TD (`-bios` with the image's TDVF metadata).
pub fn mrtd(image: &[u8]) -> Result<[u8; 48], MeasureError> {
    let firmware = Firmware::parse(image)?;
    let sections = firmware.tdvf_sections()?;
    if sections.is_empty() {
        return Err(MeasureError::MissingEntry("TDX metadata (TDVF)"));
    }
    let mut mrtd = Mrtd::new();
    for section in sections
        .iter()
        .filter(|s| s.attributes & TDVF_ATTRIBUTE_PAGE_AUG == 0)
    {
        let data = section.raw_data(image);
        let extend = section.attributes & TDVF_ATTRIBUTE_MR_EXTEND != 0;
        for page in 0..section.memory_data_size / PAGE_SIZE {
            let page_gpa = section.memory_address + page * PAGE_SIZE;
            mrtd.page_add(page_gpa);
            if !extend {
                continue;
            }
            for chunk_index in 0..PAGE_SIZE as usize / CHUNK {
                let offset = page as usize * PAGE_SIZE as usize + chunk_index * CHUNK;
                // Memory past the section's raw data is zero.
                let mut chunk = [0u8; CHUNK];
                if let Some(bytes) = data.get(offset..) {
                    let len = bytes.len().min(CHUNK);
                    chunk[..len].copy_from_slice(&bytes[..len]);
                }
                mrtd.extend(page_gpa + (chunk_index * CHUNK) as u64, &chunk);
            }
        }
    }
    Ok(mrtd.finish())
}
