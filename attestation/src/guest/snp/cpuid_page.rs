//! The SNP CPUID page (Firmware ABI 56860, "CPUID Reporting"): a table of CPUID results the
//! hypervisor proposed and the PSP checked against the CPU's real capabilities at launch. Under
//! SNP this page, not the hypervisor, answers the guest's CPUID instructions.

use core::fmt;

const COUNT: usize = 0;
const ENTRIES: usize = 16;
const ENTRY_LEN: usize = 48;
/// The firmware accepts at most this many entries.
pub const MAX_ENTRIES: usize = 64;

/// A CPUID page that cannot be what the PSP validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidPageError {
    TooManyEntries(u32),
    /// The input is shorter than a page.
    Short(usize),
}

impl fmt::Display for CpuidPageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyEntries(n) => {
                write!(f, "CPUID page claims {n} entries (max {MAX_ENTRIES})")
            }
            Self::Short(len) => write!(f, "CPUID page of {len} bytes"),
        }
    }
}

/// One entry: inputs and the validated outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuidEntry {
    pub eax_in: u32,
    pub ecx_in: u32,
    pub xcr0_in: u64,
    pub xss_in: u64,
    pub out: [u32; 4],
}

/// The parsed table (copied out of the page so it can be consulted without re-reading it).
#[derive(Clone, Debug)]
pub struct CpuidTable {
    entries: [CpuidEntry; MAX_ENTRIES],
    count: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// Leaves whose output depends on ECX (the sub-leaf); for all others ECX is ignored.
fn has_subleaf(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1F
            | 0x23
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

impl CpuidTable {
    pub fn parse(page: &[u8]) -> Result<Self, CpuidPageError> {
        if page.len() < ENTRIES + MAX_ENTRIES * ENTRY_LEN {
            return Err(CpuidPageError::Short(page.len()));
        }
        let count = u32_at(page, COUNT);
        if count as usize > MAX_ENTRIES {
            return Err(CpuidPageError::TooManyEntries(count));
        }
        let mut entries = [CpuidEntry::default(); MAX_ENTRIES];
        for (i, entry) in entries.iter_mut().take(count as usize).enumerate() {
            let e = &page[ENTRIES + i * ENTRY_LEN..ENTRIES + (i + 1) * ENTRY_LEN];
            *entry = CpuidEntry {
                eax_in: u32_at(e, 0),
                ecx_in: u32_at(e, 4),
                xcr0_in: u64_at(e, 8),
                xss_in: u64_at(e, 16),
                out: [u32_at(e, 24), u32_at(e, 28), u32_at(e, 32), u32_at(e, 36)],
            };
        }
        Ok(Self {
            entries,
            count: count as usize,
        })
    }

    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries[..self.count]
    }

    /// The validated result for (`leaf`, `subleaf`) under the current XCR0/XSS, or `None` when
    /// the page has no entry: the caller then answers zeros (a feature the PSP did not vouch
    /// for is treated as absent), never the hypervisor's value.
    pub fn lookup(&self, leaf: u32, subleaf: u32, xcr0: u64, xss: u64) -> Option<[u32; 4]> {
        self.entries().iter().find_map(|e| {
            let sub_ok = !has_subleaf(leaf) || e.ecx_in == subleaf;
            // Leaf 0xD sub-leaves 0 and 1 report XSAVE area sizes for a given XCR0/XSS.
            let xsave_ok = leaf != 0xD
                || subleaf > 1
                || (e.xcr0_in == xcr0 && (subleaf == 0 || e.xss_in == xss));
            (e.eax_in == leaf && sub_ok && xsave_ok).then_some(e.out)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn page_with(entries: &[CpuidEntry]) -> [u8; 4096] {
        let mut page = [0u8; 4096];
        page[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, e) in entries.iter().enumerate() {
            let at = ENTRIES + i * ENTRY_LEN;
            page[at..at + 4].copy_from_slice(&e.eax_in.to_le_bytes());
            page[at + 4..at + 8].copy_from_slice(&e.ecx_in.to_le_bytes());
            page[at + 8..at + 16].copy_from_slice(&e.xcr0_in.to_le_bytes());
            page[at + 16..at + 24].copy_from_slice(&e.xss_in.to_le_bytes());
            for (j, r) in e.out.iter().enumerate() {
                page[at + 24 + 4 * j..at + 28 + 4 * j].copy_from_slice(&r.to_le_bytes());
            }
        }
        page
    }

    #[test]
    fn lookups_respect_subleaf_and_xcr0() {
        let page = page_with(&[
            CpuidEntry {
                eax_in: 0x8000_001F,
                out: [0x1_0003, 0x173, 0, 0],
                ..Default::default()
            },
            CpuidEntry {
                eax_in: 7,
                ecx_in: 0,
                out: [0, 0x219C_07AB, 0, 0],
                ..Default::default()
            },
            CpuidEntry {
                eax_in: 7,
                ecx_in: 1,
                out: [0x30, 0, 0, 0],
                ..Default::default()
            },
            CpuidEntry {
                eax_in: 0xD,
                ecx_in: 0,
                xcr0_in: 0x7,
                out: [0x7, 0x340, 0x340, 0],
                ..Default::default()
            },
            CpuidEntry {
                eax_in: 0xD,
                ecx_in: 0,
                xcr0_in: 0xE7,
                out: [0xE7, 0xA88, 0xA88, 0],
                ..Default::default()
            },
        ]);
        let t = CpuidTable::parse(&page).unwrap();
        assert_eq!(t.entries().len(), 5);
        // ECX ignored for leaves without sub-leaves.
        assert_eq!(
            t.lookup(0x8000_001F, 99, 0, 0),
            Some([0x1_0003, 0x173, 0, 0])
        );
        assert_eq!(t.lookup(7, 1, 0, 0), Some([0x30, 0, 0, 0]));
        assert_eq!(t.lookup(7, 2, 0, 0), None);
        assert_eq!(t.lookup(0xD, 0, 0xE7, 0), Some([0xE7, 0xA88, 0xA88, 0]));
        assert_eq!(t.lookup(0xD, 0, 0x3, 0), None);
        assert_eq!(t.lookup(0x4000_0000, 0, 0, 0), None);
    }

    #[test]
    fn refuses_impossible_pages() {
        let mut page = [0u8; 4096];
        page[0] = 65;
        assert_eq!(
            CpuidTable::parse(&page).unwrap_err(),
            CpuidPageError::TooManyEntries(65)
        );
        assert_eq!(
            CpuidTable::parse(&page[..100]).unwrap_err(),
            CpuidPageError::Short(100)
        );
    }
}
