//! The SNP launch-digest calculator against published digests and against `sev-snp-measure`.

mod common;

use common::{Scratch, hex, sev_snp_measure, vector};
use ward_attestation::measure::firmware::{
    FOOTER_GUID, Firmware, SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID, SevSectionKind,
};
use ward_attestation::measure::snp::{LaunchDigest, SnpLaunch, launch_digest, vcpu_type_signature};

const AMD_SEV: &str = "measurement/virtee-sev/tests_measurement_ovmf_AmdSev_suffix.bin";
const OVMF_X64: &str = "measurement/virtee-sev/tests_measurement_ovmf_OvmfX64_suffix.bin";

fn measure(image: &[u8], vcpus: u32, vcpu_type: &str, guest_features: u64) -> String {
    let launch = SnpLaunch {
        vcpus,
        vcpu_signature: vcpu_type_signature(vcpu_type).unwrap(),
        guest_features,
    };
    hex(&launch_digest(image, &launch).unwrap())
}

/// Digests from virtee/sev `tests/measurement.rs` (cases without a kernel).
#[test]
fn ovmf_vectors_match_published_digests() {
    let amd_sev = vector(AMD_SEV);
    let ovmf_x64 = vector(OVMF_X64);
    let mut image_only = LaunchDigest::new();
    image_only.normal_pages(Firmware::parse(&amd_sev).unwrap().gpa().unwrap(), &amd_sev);
    assert_eq!(
        hex(&image_only.digest()),
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    );
    assert_eq!(
        measure(&amd_sev, 1, "EPYC-v4", 0x1),
        "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"
    );
    assert_eq!(
        measure(&amd_sev, 1, "EPYC-v4", 0x21),
        "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"
    );
    assert_eq!(
        measure(&ovmf_x64, 1, "EPYC-v4", 0x1),
        "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"
    );
    assert_eq!(
        measure(&ovmf_x64, 1, "EPYC-v4", 0x21),
        "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"
    );
}

#[test]
fn ovmf_vectors_metadata_is_parsed() {
    let amd_sev = vector(AMD_SEV);
    let firmware = Firmware::parse(&amd_sev).unwrap();
    let kinds: Vec<_> = firmware
        .sev_sections()
        .unwrap()
        .iter()
        .map(|s| s.kind)
        .collect();
    assert!(kinds.contains(&SevSectionKind::SnpSecrets));
    assert!(kinds.contains(&SevSectionKind::Cpuid));
    assert!(kinds.contains(&SevSectionKind::KernelHashes));
    assert_eq!(firmware.sev_es_reset_eip().unwrap(), 0x0080_b004);
}

/// An OVMF-format image like Ward's: `pages` pages of varied content, the GUID table with a
/// reset block and ASEV metadata listing every section kind sev-snp-measure handles for QEMU.
fn synthetic_image(pages: usize) -> Vec<u8> {
    let mut image: Vec<u8> = (0..pages * 4096)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let len = image.len();
    // ASEV block 1 KiB before the end of the image.
    let asev_at = len - 1024;
    let sections: [(u32, u32, u32); 5] = [
        (0x0080_0000, 0x9000, 1), // pre-validated, zeroed memory
        (0x0080_9000, 0x1000, 2), // secrets
        (0x0080_a000, 0x1000, 3), // CPUID
        (0x0080_b000, 0x2000, 1),
        (0x0080_d000, 0x1000, 4), // SVSM calling area
    ];
    let mut asev = Vec::new();
    asev.extend_from_slice(b"ASEV");
    asev.extend_from_slice(&(16 + 12 * sections.len() as u32).to_le_bytes());
    asev.extend_from_slice(&1u32.to_le_bytes());
    asev.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (gpa, size, kind) in sections {
        for word in [gpa, size, kind] {
            asev.extend_from_slice(&word.to_le_bytes());
        }
    }
    image[asev_at..asev_at + asev.len()].copy_from_slice(&asev);
    // GUID table: [reset block entry][ASEV entry][footer], ending 32 bytes before the end.
    let mut table = Vec::new();
    let mut entry = |data: &[u8], guid: &[u8; 16]| {
        table.extend_from_slice(data);
        table.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(guid);
    };
    entry(&0xffff_c000u32.to_le_bytes(), &SEV_ES_RESET_BLOCK_GUID);
    entry(&((len - asev_at) as u32).to_le_bytes(), &SEV_METADATA_GUID);
    let table_len = table.len() + 18;
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&FOOTER_GUID);
    let end = len - 32;
    image[end - table.len()..end].copy_from_slice(&table);
    image
}

#[test]
fn matches_sev_snp_measure_for_vcpu_counts_and_types() {
    let scratch = Scratch::new("snp-measure");
    let images = [
        ("amd-sev.fd", vector(AMD_SEV)),
        ("ovmf-x64.fd", vector(OVMF_X64)),
        ("synthetic.fd", synthetic_image(40)),
    ];
    let mut compared = 0;
    for (name, image) in &images {
        let path = scratch.file(name, image);
        for vcpus in [1, 2, 4] {
            for vcpu_type in ["EPYC-v4", "EPYC-Milan"] {
                let ours = measure(image, vcpus, vcpu_type, 0x1);
                let reference = sev_snp_measure(&path, vcpus, vcpu_type, 0x1);
                assert_eq!(ours, reference, "{name}, {vcpus} vCPUs, {vcpu_type}");
                compared += 1;
            }
        }
        let ours = measure(image, 3, "EPYC-Genoa", 0x21);
        assert_eq!(
            ours,
            sev_snp_measure(&path, 3, "EPYC-Genoa", 0x21),
            "{name}, features 0x21"
        );
        compared += 1;
    }
    assert_eq!(compared, 21);
}

/// Ward's own image against sev-snp-measure (see `common::ward_image`).
#[test]
fn wards_image_matches_sev_snp_measure_when_built() {
    let Some((image_path, image)) = common::ward_image() else {
        return;
    };
    for vcpus in [1, 2, 4] {
        for vcpu_type in ["EPYC-v4", "EPYC-Milan"] {
            assert_eq!(
                measure(&image, vcpus, vcpu_type, 0x1),
                sev_snp_measure(&image_path, vcpus, vcpu_type, 0x1),
                "{}, {vcpus} vCPUs, {vcpu_type}",
                image_path.display()
            );
        }
    }
}

#[test]
fn malformed_images_are_refused() {
    let mut image = synthetic_image(8);
    let launch = SnpLaunch {
        vcpus: 1,
        vcpu_signature: 0x800f12,
        guest_features: 1,
    };
    // Not a whole number of pages.
    assert!(launch_digest(&image[100..], &launch).is_err());
    // ASEV signature damaged.
    let asev_at = image.len() - 1024;
    image[asev_at] = b'X';
    assert!(launch_digest(&image, &launch).is_err());
}
