//! Round trips and every tamper case of docs/sealed-model.md.

use super::*;
use alloc::vec::Vec;

const CHUNK: u32 = MIN_CHUNK_SIZE; // 4096 on disk, 4080 plaintext per chunk
const PER: usize = CHUNK as usize - TAG_LEN;

fn key(byte: u8) -> ModelKey {
    ModelKey::from_bytes([byte; MODEL_KEY_LEN])
}

fn model(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn seal(len: usize, version: u64) -> (Vec<u8>, Vec<u8>) {
    let plain = model(len);
    let image = seal_image(&key(7), "smollm2-135m", version, CHUNK, [9; 7], &plain).unwrap();
    (plain, image)
}

/// Reads an image the way the enclave does: header, then chunk by chunk at the offsets the
/// header dictates; a chunk past the end of the disk comes back short.
fn unseal(image: &[u8], key: &ModelKey, min_version: u64) -> Result<Vec<u8>, SealedError> {
    let mut u = Unsealer::new(key, image, min_version)?;
    let mut out = Vec::new();
    while let Some(loc) = u.next_chunk() {
        let start = (loc.offset as usize).min(image.len());
        let end = (start + loc.len).min(image.len());
        let mut buf = image[start..end].to_vec();
        let n = u.open_chunk_in_place(&mut buf)?;
        out.extend_from_slice(&buf[..n]);
    }
    u.finish()?;
    Ok(out)
}

fn chunk_range(image: &[u8], index: u64) -> core::ops::Range<usize> {
    let h = SealedHeader::parse(image).unwrap();
    let start = h.chunk_offset(index) as usize;
    start..start + h.chunk_plaintext_len(index) + TAG_LEN
}

#[test]
fn round_trip_for_edge_sizes() {
    for len in [0, 1, PER - 1, PER, PER + 1, 3 * PER, 3 * PER + 1, 10_000] {
        let (plain, image) = seal(len, 3);
        assert_eq!(image.len() % SECTOR_SIZE as usize, 0, "len {len}");
        let h = SealedHeader::parse(&image).unwrap();
        assert_eq!(
            h.chunk_count(),
            (len.div_ceil(PER)).max(1) as u64,
            "len {len}"
        );
        assert_eq!(image.len() as u64, h.image_len());
        assert_eq!(unseal(&image, &key(7), 3).unwrap(), plain, "len {len}");
    }
}

#[test]
fn finish_reports_the_verified_header() {
    let (plain, image) = seal(5000, 4);
    let mut u = Unsealer::new(&key(7), &image, 1).unwrap();
    while let Some(loc) = u.next_chunk() {
        let mut buf = image[loc.offset as usize..loc.offset as usize + loc.len].to_vec();
        u.open_chunk_in_place(&mut buf).unwrap();
    }
    let v = u.finish().unwrap();
    assert_eq!(v.model_id.as_str(), "smollm2-135m");
    assert_eq!(v.model_version, 4);
    assert_eq!(v.plaintext_len, 5000);
    assert_eq!(
        v.plaintext_sha384,
        <sha2::Sha384 as sha2::Digest>::digest(&plain)[..]
    );
}

#[test]
fn in_place_layout_in_one_model_buffer() {
    // The layout docs/sealed-model.md suggests: chunk i read to i * PER, tags overwritten.
    let (plain, image) = seal(2 * PER + 100, 1);
    let mut u = Unsealer::new(&key(7), &image, 0).unwrap();
    let mut buf = alloc::vec![0u8; plain.len() + TAG_LEN];
    while let Some(loc) = u.next_chunk() {
        let at = loc.index as usize * PER;
        let src = loc.offset as usize;
        buf[at..at + loc.len].copy_from_slice(&image[src..src + loc.len]);
        u.open_chunk_in_place(&mut buf[at..at + loc.len]).unwrap();
    }
    u.finish().unwrap();
    assert_eq!(&buf[..plain.len()], &plain[..]);
}

#[test]
fn every_header_byte_flip_is_refused() {
    let (_, image) = seal(100, 1);
    for at in 0..HEADER_LEN {
        let mut bad = image.clone();
        bad[at] ^= 0x01;
        assert!(
            unseal(&bad, &key(7), 0).is_err(),
            "flip at header byte {at} accepted"
        );
    }
}

#[test]
fn header_flip_of_an_authenticated_field_names_the_header() {
    let (_, image) = seal(100, 1);
    let mut bad = image.clone();
    bad[24] ^= 0x01; // model_version
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::HeaderAuthentication
    );
    let mut bad = image;
    bad[0] = b'X';
    assert_eq!(unseal(&bad, &key(7), 0).unwrap_err(), SealedError::BadMagic);
}

#[test]
fn middle_chunk_byte_flip_is_refused() {
    let (_, image) = seal(3 * PER + 10, 1);
    let mut bad = image.clone();
    bad[chunk_range(&image, 1).start + 17] ^= 0x80;
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::ChunkAuthentication { index: 1 }
    );
    let mut bad = image.clone();
    bad[chunk_range(&image, 1).end - 1] ^= 0x80; // the tag itself
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::ChunkAuthentication { index: 1 }
    );
}

#[test]
fn dropped_chunk_is_refused() {
    let (_, image) = seal(3 * PER + 10, 1);
    let mut bad = image.clone();
    bad.drain(chunk_range(&image, 1));
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::ChunkAuthentication { index: 1 }
    );
}

#[test]
fn reordered_chunks_are_refused() {
    let (_, image) = seal(3 * PER + 10, 1);
    let (a, b) = (chunk_range(&image, 0), chunk_range(&image, 1));
    let mut bad = image.clone();
    bad[a.clone()].copy_from_slice(&image[b.clone()]);
    bad[b].copy_from_slice(&image[a]);
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::ChunkAuthentication { index: 0 }
    );
}

#[test]
fn truncated_last_chunk_is_refused() {
    let (_, image) = seal(2 * PER + 500, 1);
    let last = chunk_range(&image, 2);
    let short = &image[..last.end - 1];
    assert!(matches!(
        unseal(short, &key(7), 0).unwrap_err(),
        SealedError::ChunkLength { index: 2, .. }
    ));
    // Cut off the whole last chunk: the reader still asks for it and finds nothing.
    let cut = &image[..last.start];
    assert!(matches!(
        unseal(cut, &key(7), 0).unwrap_err(),
        SealedError::ChunkLength {
            index: 2,
            got: 0,
            ..
        }
    ));
}

#[test]
fn a_non_last_chunk_cannot_pose_as_the_last() {
    // A model of exactly two full chunks, and the same model sealed with the same key and nonce
    // prefix but one chunk longer: chunk 1 of the longer image is a non-last chunk with the
    // same index and plaintext, which must not stand in for the shorter image's last chunk.
    let plain = model(3 * PER);
    let long = seal_image(&key(7), "m", 1, CHUNK, [9; 7], &plain).unwrap();
    let short = seal_image(&key(7), "m", 1, CHUNK, [9; 7], &plain[..2 * PER]).unwrap();
    let mut bad = short.clone();
    let r = chunk_range(&short, 1);
    bad[r.clone()].copy_from_slice(&long[chunk_range(&long, 1)]);
    assert_eq!(
        unseal(&bad, &key(7), 0).unwrap_err(),
        SealedError::ChunkAuthentication { index: 1 }
    );
}

#[test]
fn appended_chunk_is_refused() {
    let (_, image) = seal(PER + 1, 1);
    let mut u = Unsealer::new(&key(7), &image, 0).unwrap();
    while let Some(loc) = u.next_chunk() {
        let mut buf = image[loc.offset as usize..loc.offset as usize + loc.len].to_vec();
        u.open_chunk_in_place(&mut buf).unwrap();
    }
    let mut extra = image[chunk_range(&image, 0)].to_vec();
    assert_eq!(
        u.open_chunk_in_place(&mut extra).unwrap_err(),
        SealedError::AlreadyComplete
    );
}

#[test]
fn wrong_key_is_refused() {
    let (_, image) = seal(100, 1);
    assert_eq!(
        unseal(&image, &key(8), 0).unwrap_err(),
        SealedError::HeaderAuthentication
    );
}

#[test]
fn version_below_minimum_is_refused() {
    let (_, image) = seal(100, 4);
    assert_eq!(
        unseal(&image, &key(7), 5).unwrap_err(),
        SealedError::VersionBelowMinimum {
            version: 4,
            minimum: 5
        }
    );
    assert!(unseal(&image, &key(7), 4).is_ok());
}

#[test]
fn finish_before_the_last_chunk_is_incomplete_and_errors_poison() {
    let (_, image) = seal(2 * PER, 1);
    let u = Unsealer::new(&key(7), &image, 0).unwrap();
    assert!(matches!(
        u.finish().unwrap_err(),
        SealedError::Incomplete { next_index: 0, .. }
    ));

    let mut u = Unsealer::new(&key(7), &image, 0).unwrap();
    let mut bad = image[chunk_range(&image, 0)].to_vec();
    bad[0] ^= 1;
    assert!(u.open_chunk_in_place(&mut bad).is_err());
    let mut good = image[chunk_range(&image, 0)].to_vec();
    assert_eq!(
        u.open_chunk_in_place(&mut good).unwrap_err(),
        SealedError::Poisoned
    );
    assert_eq!(u.next_chunk(), None);
    assert_eq!(u.finish().unwrap_err(), SealedError::Poisoned);
}

#[test]
fn digest_mismatch_is_refused_even_when_chunks_authenticate() {
    let plain = model(100);
    let params = SealParams {
        model_id: "m",
        model_version: 1,
        plaintext_len: 100,
        plaintext_sha384: [0xAA; 48],
        chunk_size: CHUNK,
        nonce_prefix: [1; 7],
    };
    let mut sealer = Sealer::new(&key(7), &params).unwrap();
    let mut image = sealer.header_bytes().to_vec();
    image.resize(CHUNKS_OFFSET as usize, 0);
    let mut chunk = plain.clone();
    chunk.resize(100 + TAG_LEN, 0);
    sealer.seal_chunk_in_place(&mut chunk).unwrap();
    image.extend_from_slice(&chunk);
    assert_eq!(
        unseal(&image, &key(7), 0).unwrap_err(),
        SealedError::PlaintextDigestMismatch
    );
}

#[test]
fn header_rules_are_checked() {
    let (_, image) = seal(10, 1);
    assert_eq!(
        SealedHeader::parse(&image[..100]).unwrap_err(),
        SealedError::HeaderTooShort { len: 100 }
    );
    let mut bad = image.clone();
    bad[12..16].copy_from_slice(&4097u32.to_le_bytes());
    assert_eq!(
        SealedHeader::parse(&bad).unwrap_err(),
        SealedError::InvalidHeaderField {
            field: "chunk_size"
        }
    );
    let mut bad = image.clone();
    bad[8] = 2;
    assert_eq!(
        SealedHeader::parse(&bad).unwrap_err(),
        SealedError::UnsupportedFormatVersion { version: 2 }
    );
    let mut bad = image;
    bad[87] = 0;
    assert_eq!(
        SealedHeader::parse(&bad).unwrap_err(),
        SealedError::InvalidHeaderField { field: "model_id" }
    );
    assert!(ModelId::new("").is_err());
    assert!(ModelId::new(&"x".repeat(65)).is_err());
}

#[test]
fn sealing_rejects_a_wrong_chunk_length() {
    let params = SealParams {
        model_id: "m",
        model_version: 1,
        plaintext_len: 10,
        plaintext_sha384: [0; 48],
        chunk_size: CHUNK,
        nonce_prefix: [0; 7],
    };
    let mut sealer = Sealer::new(&key(1), &params).unwrap();
    let mut buf = [0u8; 11 + TAG_LEN];
    assert!(matches!(
        sealer.seal_chunk_in_place(&mut buf).unwrap_err(),
        SealedError::PlaintextLength {
            expected: 10,
            got: 11
        }
    ));
}
