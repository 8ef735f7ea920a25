//! The first instructions of Ward's image, where every platform enters: plain VMs and SEV-SNP in
//! real mode, TDX in flat 32-bit protected mode (docs/confidential-guests.md, "Reset vector").
//! No TDX machine exists here, so this pins the bytes both paths depend on in the built image.

mod common;

/// Reads a little-endian `i32` at `at`.
fn rel32(image: &[u8], at: usize) -> i64 {
    i64::from(i32::from_le_bytes(image[at..at + 4].try_into().unwrap()))
}

#[test]
fn reset_vector_dispatches_on_cr0_pe_and_tdx_entry_parks_aps() {
    let Some((_, image)) = common::ward_image() else {
        return;
    };
    let base = 0x1_0000_0000u64 - image.len() as u64;
    let at = |address: u64| (address - base) as usize;
    let reset = at(0xFFFF_FFF0);
    // mov eax, cr0 / test al, 1 / jz +5 — identical encodings in 16- and 32-bit mode.
    assert_eq!(
        &image[reset..reset + 7],
        &[0x0F, 0x20, 0xC0, 0xA8, 0x01, 0x74, 0x05]
    );
    // 32-bit path: jmp rel32 to the TDX entry.
    assert_eq!(image[reset + 7], 0xE9);
    let tdx_entry = (0xFFFF_FFFCu64 as i64 + rel32(&image, reset + 8)) as u64 & 0xFFFF_FFFF;
    // 16-bit path (the jz target): jmp rel16 within the top 64 KiB (CS base 0xFFFF0000).
    assert_eq!(image[reset + 12], 0xE9);
    let rel16 = i16::from_le_bytes([image[reset + 13], image[reset + 14]]);
    // The next IP is 0xFFFF; IP wraps inside the 64 KiB segment.
    let real_entry = 0xFFFF_0000u64 + u64::from(0xFFFFu16.wrapping_add(rel16 as u16));
    assert!(
        tdx_entry >= base && tdx_entry < 0xFFFF_FFF0,
        "{tdx_entry:#x}"
    );
    assert!(
        real_entry >= base && real_entry < 0xFFFF_FFF0,
        "{real_entry:#x}"
    );
    // The real-mode path starts with cli; cld.
    assert_eq!(&image[at(real_entry)..at(real_entry) + 2], &[0xFA, 0xFC]);
    // The TDX entry: cli; cld; test esi, esi; jnz <park>; lgdt [abs32]; ...; park: pause; jmp.
    let t = at(tdx_entry);
    assert_eq!(&image[t..t + 5], &[0xFA, 0xFC, 0x85, 0xF6, 0x75]);
    let park = t + 6 + image[t + 5] as usize;
    assert_eq!(
        &image[park..park + 4],
        &[0xF3, 0x90, 0xEB, 0xFC],
        "APs spin on pause"
    );
    assert_eq!(
        &image[t + 6..t + 9],
        &[0x0F, 0x01, 0x15],
        "lgdt with a 32-bit absolute address"
    );
}
