//! The TDX MRTD calculator on a synthetic TDVF image, against a replay of the TDX module's
//! operations written out as one flat byte stream, and the configuration digests.
//! (No published image/MRTD pair exists in the vectors: their quotes' firmware is not public.)

mod common;

use common::hex;
use sha2::{Digest, Sha384};
use ward_attestation::measure::firmware::{
    FOOTER_GUID, Firmware, SevSectionKind, TDVF_ATTRIBUTE_MR_EXTEND, TDX_METADATA_GUID,
    TdvfSectionKind,
};
use ward_attestation::measure::tdx::mrtd;
use ward_attestation::measure::{MeasureError, config};

const IMAGE_PAGES: usize = 16;
const IMAGE_GPA: u64 = (1 << 32) - (IMAGE_PAGES as u64) * 4096;

/// Sections: (data offset, raw size, GPA, memory size, type, attributes).
fn sections() -> Vec<(u32, u32, u64, u64, u32, u32)> {
    vec![
        // BFV: the whole image, measured.
        (
            0,
            (IMAGE_PAGES * 4096) as u32,
            IMAGE_GPA,
            (IMAGE_PAGES * 4096) as u64,
            0,
            1,
        ),
        // TD_HOB and temporary memory: added, not extended.
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x9000, 3, 0),
        // A measured section whose raw data is shorter than its memory (zero-extended).
        (0x1000, 0x1800, 0x100_0000, 0x3000, 1, 1),
        // Added after launch: not measured at all.
        (0, 0, 0x200_0000, 0x4000, 4, 2),
    ]
}

fn tdvf_image() -> Vec<u8> {
    let mut image: Vec<u8> = (0..IMAGE_PAGES * 4096)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    let len = image.len();
    let descriptor_at = len - 2048;
    let mut descriptor = Vec::new();
    descriptor.extend_from_slice(b"TDVF");
    descriptor.extend_from_slice(&(16 + 32 * sections().len() as u32).to_le_bytes());
    descriptor.extend_from_slice(&1u32.to_le_bytes());
    descriptor.extend_from_slice(&(sections().len() as u32).to_le_bytes());
    for (offset, raw, gpa, size, kind, attributes) in sections() {
        descriptor.extend_from_slice(&offset.to_le_bytes());
        descriptor.extend_from_slice(&raw.to_le_bytes());
        descriptor.extend_from_slice(&gpa.to_le_bytes());
        descriptor.extend_from_slice(&size.to_le_bytes());
        descriptor.extend_from_slice(&kind.to_le_bytes());
        descriptor.extend_from_slice(&attributes.to_le_bytes());
    }
    image[descriptor_at..descriptor_at + descriptor.len()].copy_from_slice(&descriptor);
    let mut table = Vec::new();
    table.extend_from_slice(&((len - descriptor_at) as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&TDX_METADATA_GUID);
    table.extend_from_slice(&(22u16 + 18).to_le_bytes());
    table.extend_from_slice(&FOOTER_GUID);
    let end = len - 32;
    image[end - table.len()..end].copy_from_slice(&table);
    image
}

/// The TDX module's MRTD for the synthetic image, written out operation by operation (TDX
/// Module ABI: 128-byte `MEM.PAGE.ADD` / `MR.EXTEND` blocks, GPA at byte 16; KVM extends each
/// page right after adding it).
fn replayed_mrtd(image: &[u8]) -> String {
    let mut stream = Vec::new();
    let block = |name: &[u8], gpa: u64| {
        let mut b = vec![0u8; 128];
        b[..name.len()].copy_from_slice(name);
        b[16..24].copy_from_slice(&gpa.to_le_bytes());
        b
    };
    for (offset, raw, gpa, size, _, attributes) in sections() {
        if attributes & 2 != 0 {
            continue;
        }
        let mut memory = vec![0u8; size as usize];
        memory[..raw as usize].copy_from_slice(&image[offset as usize..(offset + raw) as usize]);
        for page in 0..size / 4096 {
            stream.extend(block(b"MEM.PAGE.ADD", gpa + page * 4096));
            if attributes & 1 != 0 {
                for chunk in 0..16u64 {
                    let at = page * 4096 + chunk * 256;
                    stream.extend(block(b"MR.EXTEND", gpa + at));
                    stream.extend_from_slice(&memory[at as usize..at as usize + 256]);
                }
            }
        }
    }
    hex(&Sha384::digest(&stream))
}

#[test]
fn mrtd_matches_the_replayed_operations() {
    let image = tdvf_image();
    let firmware = Firmware::parse(&image).unwrap();
    let kinds: Vec<_> = firmware
        .tdvf_sections()
        .unwrap()
        .iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(kinds[0], TdvfSectionKind::Bfv);
    assert_eq!(kinds[1], TdvfSectionKind::TdHob);
    assert_eq!(hex(&mrtd(&image).unwrap()), replayed_mrtd(&image));
    // Any measured byte changes MRTD; an unmeasured section's placement does not exist in it.
    let mut changed = image.clone();
    changed[0x1234] ^= 1;
    assert_ne!(mrtd(&changed).unwrap(), mrtd(&image).unwrap());
}

#[test]
fn ovmf_vectors_tdvf_metadata_is_parsed_but_its_data_is_outside_the_suffix() {
    // The vectors hold only the last 4 KiB of two OVMF builds: their descriptors parse, and the
    // BFV they describe reaches outside the file, which must be refused rather than read.
    for name in ["AmdSev", "OvmfX64"] {
        let path = format!("measurement/virtee-sev/tests_measurement_ovmf_{name}_suffix.bin");
        let image = common::vector(&path);
        let result = mrtd(&image);
        assert!(
            matches!(result, Err(MeasureError::BadMetadata { which: "TDVF", .. })),
            "{result:?}"
        );
    }
}

#[test]
fn images_without_tdvf_are_refused() {
    assert!(matches!(mrtd(&[0u8; 8192]), Err(MeasureError::NoGuidTable)));
    // A GUID table with only the footer: no TDVF entry.
    let mut image = vec![0u8; 8192];
    let end = image.len() - 32;
    image[end - 18..end - 16].copy_from_slice(&18u16.to_le_bytes());
    image[end - 16..end].copy_from_slice(&FOOTER_GUID);
    assert!(matches!(mrtd(&image), Err(MeasureError::MissingEntry(_))));
}

#[test]
fn configuration_digests_are_sha256_and_sha384_of_the_file() {
    let file = b"min_model_version = 3\n";
    assert_eq!(
        config::host_data(file).as_slice(),
        sha2::Sha256::digest(file).as_slice()
    );
    assert_eq!(
        config::mr_config_id(file).as_slice(),
        Sha384::digest(file).as_slice()
    );
}

/// Ward's own image (see `common::ward_image`): its ASEV metadata lists the secrets and CPUID
/// pages, its first TDVF section is the measured BFV covering the whole image ending at 4 GiB,
/// and both measurements compute.
#[test]
fn wards_image_metadata_parses_when_built() {
    let Some((_, image)) = common::ward_image() else {
        return;
    };
    let firmware = Firmware::parse(&image).unwrap();
    let sev: Vec<_> = firmware
        .sev_sections()
        .unwrap()
        .iter()
        .map(|s| s.kind)
        .collect();
    assert!(sev.contains(&SevSectionKind::SnpSecrets), "{sev:?}");
    assert!(sev.contains(&SevSectionKind::Cpuid), "{sev:?}");
    let tdvf = firmware.tdvf_sections().unwrap();
    let bfv = tdvf[0];
    assert_eq!(bfv.kind, TdvfSectionKind::Bfv);
    assert_eq!(
        (bfv.data_offset as usize, bfv.raw_data_size as usize),
        (0, image.len())
    );
    assert_eq!(bfv.memory_address, firmware.gpa().unwrap());
    assert_ne!(bfv.attributes & TDVF_ATTRIBUTE_MR_EXTEND, 0);
    assert!(
        tdvf[1..]
            .iter()
            .all(|s| s.raw_data_size == 0 && s.attributes & TDVF_ATTRIBUTE_MR_EXTEND == 0)
    );
    assert!(mrtd(&image).is_ok());
    firmware.sev_es_reset_eip().unwrap();
}
