//! The SEV-SNP launch digest: the `MEASUREMENT` a report carries.
//!
//! The PSP keeps a SHA-384 chain over every page the hypervisor adds with `SNP_LAUNCH_UPDATE`
//! (ABI 56860, section "SNP_LAUNCH_UPDATE", table "PAGE_INFO"): for each page it hashes the
//! previous digest, the page's content digest and the page's type and address. QEMU adds, in this
//! order: the firmware image as normal pages ending at 4 GiB, the sections the image's ASEV
//! metadata lists (zero, secrets, CPUID pages), and one VMSA page per vCPU (the boot processor
//! starts at the reset vector, the others at the SEV-ES reset block's address).

use super::firmware::{Firmware, SevSectionKind};
use super::{MeasureError, PAGE_SIZE};
use sha2::{Digest, Sha384};

/// Page types in `PAGE_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Secrets = 5,
    Cpuid = 6,
}

/// The guest context's launch digest chain.
#[derive(Debug, Clone)]
pub struct LaunchDigest {
    digest: [u8; 48],
}

impl Default for LaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl LaunchDigest {
    /// The PSP records VMSA pages at GPA `(u64)-1`, page-aligned and cut to 52 bits.
    const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

    pub fn new() -> Self {
        Self { digest: [0; 48] }
    }

    pub fn digest(&self) -> [u8; 48] {
        self.digest
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        const PAGE_INFO_LEN: u16 = 0x70;
        let mut page_info = [0u8; PAGE_INFO_LEN as usize];
        page_info[..48].copy_from_slice(&self.digest);
        page_info[48..96].copy_from_slice(contents);
        page_info[96..98].copy_from_slice(&PAGE_INFO_LEN.to_le_bytes());
        page_info[98] = page_type as u8;
        // IMI_PAGE and the VMPL1..3 permissions stay 0 for a launch without a migration agent.
        page_info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.digest = Sha384::digest(page_info).into();
    }

    /// Adds `data` (a whole number of pages) as normal pages starting at `gpa`.
    pub fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (index, page) in data.chunks(PAGE_SIZE as usize).enumerate() {
            let contents: [u8; 48] = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + index as u64 * PAGE_SIZE, &contents);
        }
    }

    pub fn zero_pages(&mut self, gpa: u64, len: u64) {
        for index in 0..len / PAGE_SIZE {
            self.update(PageType::Zero, gpa + index * PAGE_SIZE, &[0; 48]);
        }
    }

    pub fn secrets_page(&mut self, gpa: u64) {
        self.update(PageType::Secrets, gpa, &[0; 48]);
    }

    pub fn cpuid_page(&mut self, gpa: u64) {
        self.update(PageType::Cpuid, gpa, &[0; 48]);
    }

    pub fn vmsa_page(&mut self, page: &[u8; PAGE_SIZE as usize]) {
        let contents: [u8; 48] = Sha384::digest(page).into();
        self.update(PageType::Vmsa, Self::VMSA_GPA, &contents);
    }
}

/// The launch parameters that enter the measurement besides the image.
#[derive(Debug, Clone, Copy)]
pub struct SnpLaunch {
    pub vcpus: u32,
    /// CPUID signature of the vCPU model (family/model/stepping), see [`vcpu_signature`].
    pub vcpu_signature: u32,
    /// `SEV_FEATURES` of every VMSA (QEMU's default is 0x1, SNP active).
    pub guest_features: u64,
}

/// The SNP launch digest of `image` booted by QEMU with `-bios` and the given parameters.
pub fn launch_digest(image: &[u8], launch: &SnpLaunch) -> Result<[u8; 48], MeasureError> {
    if launch.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    let firmware = Firmware::parse(image)?;
    let mut ld = LaunchDigest::new();
    ld.normal_pages(firmware.gpa()?, image);
    for section in firmware.sev_sections()? {
        match section.kind {
            SevSectionKind::SnpSecMem | SevSectionKind::SvsmCaa | SevSectionKind::KernelHashes => {
                if section.size % PAGE_SIZE != 0 {
                    return Err(MeasureError::BadMetadata {
                        which: "ASEV",
                        reason: "section size not a whole number of pages",
                    });
                }
                ld.zero_pages(section.gpa, section.size);
            }
            SevSectionKind::SnpSecrets => ld.secrets_page(section.gpa),
            SevSectionKind::Cpuid => ld.cpuid_page(section.gpa),
        }
    }
    // Like QEMU and sev-snp-measure, an image without a reset block is refused even for a
    // single vCPU: it cannot start application processors.
    let ap_eip = firmware.sev_es_reset_eip()?;
    let bsp = vmsa_page(BSP_EIP, launch);
    let ap = vmsa_page(ap_eip, launch);
    for vcpu in 0..launch.vcpus {
        ld.vmsa_page(if vcpu == 0 { &bsp } else { &ap });
    }
    Ok(ld.digest())
}

/// The boot processor starts at the architectural reset vector.
const BSP_EIP: u32 = 0xffff_fff0;

/// The initial VMSA (SEV-ES save area, AMD APM vol. 2 table B-4) that QEMU/KVM give a vCPU
/// starting in real mode at `eip`.
fn vmsa_page(eip: u32, launch: &SnpLaunch) -> [u8; PAGE_SIZE as usize] {
    let mut page = [0u8; PAGE_SIZE as usize];
    let mut put = |offset: usize, bytes: &[u8]| {
        page[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    let segment = |selector: u16, attrib: u16, limit: u32, base: u64| {
        let mut seg = [0u8; 16];
        seg[0..2].copy_from_slice(&selector.to_le_bytes());
        seg[2..4].copy_from_slice(&attrib.to_le_bytes());
        seg[4..8].copy_from_slice(&limit.to_le_bytes());
        seg[8..16].copy_from_slice(&base.to_le_bytes());
        seg
    };
    let data = segment(0, 0x93, 0xffff, 0);
    put(0x00, &data); // es
    put(
        0x10,
        &segment(0xf000, 0x9b, 0xffff, u64::from(eip & 0xffff_0000)),
    ); // cs
    put(0x20, &data); // ss
    put(0x30, &data); // ds
    put(0x40, &data); // fs
    put(0x50, &data); // gs
    put(0x60, &segment(0, 0, 0xffff, 0)); // gdtr
    put(0x70, &segment(0, 0x82, 0xffff, 0)); // ldtr
    put(0x80, &segment(0, 0, 0xffff, 0)); // idtr
    put(0x90, &segment(0, 0x8b, 0xffff, 0)); // tr
    put(0xd0, &0x1000u64.to_le_bytes()); // efer: KVM sets SVME
    put(0x148, &0x40u64.to_le_bytes()); // cr4: MCE
    put(0x158, &0x10u64.to_le_bytes()); // cr0: ET
    put(0x160, &0x400u64.to_le_bytes()); // dr7
    put(0x168, &0xffff_0ff0u64.to_le_bytes()); // dr6
    put(0x170, &0x2u64.to_le_bytes()); // rflags
    put(0x178, &u64::from(eip & 0xffff).to_le_bytes()); // rip
    put(0x268, &0x0007_0406_0007_0406u64.to_le_bytes()); // g_pat: power-on PAT
    put(0x310, &u64::from(launch.vcpu_signature).to_le_bytes()); // rdx: CPUID(1).EAX at reset
    put(0x3b0, &launch.guest_features.to_le_bytes()); // sev_features
    put(0x3e8, &0x1u64.to_le_bytes()); // xcr0: x87
    put(0x408, &0x1f80u32.to_le_bytes()); // mxcsr
    put(0x410, &0x037fu16.to_le_bytes()); // x87 fcw
    page
}

/// The CPUID(1).EAX signature for a family, model and stepping (AMD CPUID specification
/// 25481, "Fn0000_0001_EAX").
pub const fn vcpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    family_high << 20
        | ((model >> 4) & 0xf) << 16
        | family_low << 8
        | (model & 0xf) << 4
        | (stepping & 0xf)
}

/// QEMU's EPYC vCPU models and their signatures (QEMU `builtin_x86_defs`).
pub const VCPU_TYPES: &[(&str, u32)] = &[
    ("EPYC", vcpu_signature(23, 1, 2)),
    ("EPYC-v1", vcpu_signature(23, 1, 2)),
    ("EPYC-v2", vcpu_signature(23, 1, 2)),
    ("EPYC-IBPB", vcpu_signature(23, 1, 2)),
    ("EPYC-v3", vcpu_signature(23, 1, 2)),
    ("EPYC-v4", vcpu_signature(23, 1, 2)),
    ("EPYC-Rome", vcpu_signature(23, 49, 0)),
    ("EPYC-Rome-v1", vcpu_signature(23, 49, 0)),
    ("EPYC-Rome-v2", vcpu_signature(23, 49, 0)),
    ("EPYC-Rome-v3", vcpu_signature(23, 49, 0)),
    ("EPYC-Milan", vcpu_signature(25, 1, 1)),
    ("EPYC-Milan-v1", vcpu_signature(25, 1, 1)),
    ("EPYC-Milan-v2", vcpu_signature(25, 1, 1)),
    ("EPYC-Genoa", vcpu_signature(25, 17, 0)),
    ("EPYC-Genoa-v1", vcpu_signature(25, 17, 0)),
    ("EPYC-Turin", vcpu_signature(26, 0, 0)),
];

/// The signature of a QEMU vCPU model by name.
pub fn vcpu_type_signature(name: &str) -> Result<u32, MeasureError> {
    VCPU_TYPES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, signature)| *signature)
        .ok_or(MeasureError::UnknownVcpuType)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_qemu_models() {
        assert_eq!(vcpu_type_signature("EPYC-v4").unwrap(), 0x0080_0f12);
        assert_eq!(vcpu_type_signature("EPYC-Milan").unwrap(), 0x00a0_0f11);
        assert_eq!(vcpu_type_signature("EPYC-Turin").unwrap(), 0x00b0_0f00);
        assert!(vcpu_type_signature("Skylake").is_err());
    }

    #[test]
    fn zero_vcpus_is_refused() {
        let launch = SnpLaunch {
            vcpus: 0,
            vcpu_signature: 0,
            guest_features: 1,
        };
        assert_eq!(
            launch_digest(&[0u8; 4096], &launch),
            Err(MeasureError::NoVcpus)
        );
    }
}
