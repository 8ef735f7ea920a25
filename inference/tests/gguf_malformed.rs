//! Malformed GGUF files give typed errors, never panics.

mod support;

use support::gguf_writer::{GgufWriter, Meta, strs};
use ward_inference::gguf::{Gguf, GgufError};

fn valid_file() -> GgufWriter {
    let mut writer = GgufWriter::new();
    writer
        .meta("general.architecture", Meta::Str("llama".into()))
        .meta("tokens", strs(&["a", "b", "c"]))
        .meta(
            "nested",
            Meta::Array(9, vec![Meta::Array(5, vec![Meta::I32(1)])]),
        );
    writer.tensor("a", &[32, 2], 3, vec![1u8; 40]);
    writer.tensor("b", &[4], 0, vec![0u8; 16]);
    writer
}

#[test]
fn the_base_file_is_valid() {
    Gguf::parse(&valid_file().build()).expect("valid");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid_file().build();
    for len in 0..bytes.len() {
        let result = Gguf::parse(&bytes[..len]);
        assert!(result.is_err(), "truncated to {len} bytes was accepted");
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Each corruption must either parse or give an error; none may panic.
    let bytes = valid_file().build();
    for at in 0..bytes.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut copy = bytes.clone();
            copy[at] = value;
            let _ = Gguf::parse(&copy);
        }
    }
}

#[test]
fn bad_magic_and_version() {
    let mut bytes = valid_file().build();
    bytes[0] = b'X';
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::BadMagic { .. })
    ));
    for version in [1u32, 4, 0x0300_0000] {
        let mut writer = valid_file();
        writer.version = version;
        assert_eq!(
            Gguf::parse(&writer.build()).unwrap_err(),
            GgufError::UnsupportedVersion { version }
        );
    }
}

#[test]
fn oversized_counts() {
    let bytes = valid_file().build();
    // Tensor count (bytes 8..16) and metadata count (16..24).
    for (at, what) in [(8, "tensors"), (16, "metadata entries")] {
        for count in [u64::MAX, 1 << 40, 100_000] {
            let mut copy = bytes.clone();
            copy[at..at + 8].copy_from_slice(&count.to_le_bytes());
            match Gguf::parse(&copy) {
                Err(GgufError::TooMany { what: w, .. }) => assert_eq!(w, what),
                other => panic!("count {count} for {what}: {other:?}"),
            }
        }
    }
    // An array claiming more elements than the file holds.
    let mut writer = GgufWriter::new();
    writer.meta("tokens", strs(&["a"]));
    let mut bytes = writer.build();
    // header 24 + key (8 + 6) + type 4 + element type 4 = 46: the element count.
    bytes[46..54].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::TooMany {
            what: "array elements",
            ..
        })
    ));
    // A string length past the end.
    let mut bytes = writer.build();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::StringTooLong { .. })
    ));
}

#[test]
fn out_of_bounds_and_misaligned_offsets() {
    let writer = valid_file();
    let (bytes, offset_fields) = writer.build_with_offsets();
    let field = offset_fields[1];
    for (offset, misaligned) in [
        (u64::MAX - 31, false),
        (1 << 20, false),
        (4096, false),
        (3, true),
    ] {
        let mut copy = bytes.clone();
        copy[field..field + 8].copy_from_slice(&offset.to_le_bytes());
        match Gguf::parse(&copy) {
            Err(GgufError::TensorOutOfBounds {
                tensor_index: 1, ..
            }) if !misaligned => {}
            Err(GgufError::MisalignedTensor {
                tensor_index: 1, ..
            }) if misaligned => {}
            other => panic!("offset {offset}: {other:?}"),
        }
    }
    // Pointing tensor b into tensor a's data.
    let mut copy = bytes.clone();
    copy[field..field + 8].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&copy),
        Err(GgufError::OverlappingTensors { .. })
    ));
}

#[test]
fn bad_types_and_shapes() {
    let mut writer = valid_file();
    writer.tensors[0].type_id = 12; // Q4_K: not read by this engine
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::UnsupportedTensorType {
            tensor_index: 0,
            type_id: 12
        })
    ));
    let mut writer = valid_file();
    writer.tensors[0].type_id = 9999;
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::UnsupportedTensorType { .. })
    ));

    let mut writer = valid_file();
    writer.tensors[0].dims = vec![31, 2];
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::NotBlockAligned { .. })
    ));
    let mut writer = valid_file();
    writer.tensors[0].dims = vec![32, 0];
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::BadDimensions { .. })
    ));
    let mut writer = valid_file();
    writer.tensors[0].dims = vec![32, 1, 1, 1, 1];
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::BadDimensions { .. })
    ));
    let mut writer = valid_file();
    writer.tensors[0].dims = vec![32, u64::MAX / 4, 8];
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::SizeOverflow { .. })
    ));

    let mut writer = valid_file();
    writer.metadata.push(("bad".into(), Meta::U32(1)));
    let mut bytes = writer.build();
    // Rewrite the last metadata entry's type id (after its key) to an undefined type.
    let key_end = find(&bytes, b"bad") + 3;
    bytes[key_end..key_end + 4].copy_from_slice(&13u32.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::UnknownValueType { type_id: 13, .. })
    ));
}

#[test]
fn bad_alignment_duplicates_bools_and_utf8() {
    for value in [
        Meta::U32(0),
        Meta::U32(48),
        Meta::U32(1 << 30),
        Meta::U64(32),
    ] {
        let mut writer = valid_file();
        writer.meta("general.alignment", value.clone());
        assert!(
            matches!(
                Gguf::parse(&writer.build()),
                Err(GgufError::BadAlignment { .. })
            ),
            "{value:?}"
        );
    }
    let mut writer = valid_file();
    writer.meta("tokens", Meta::U8(1));
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::DuplicateKey { .. })
    ));
    let mut writer = valid_file();
    writer.tensor("a", &[4], 0, vec![0u8; 16]);
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::DuplicateTensor { .. })
    ));

    let mut writer = GgufWriter::new();
    writer.meta("flag", Meta::U8(2));
    let mut bytes = writer.build();
    let type_at = find(&bytes, b"flag") + 4;
    bytes[type_at..type_at + 4].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::InvalidBool { byte: 2, .. })
    ));

    let mut writer = GgufWriter::new();
    writer.meta("text", Meta::Str("ab".into()));
    let mut bytes = writer.build();
    let at = find(&bytes, b"ab") + 1;
    bytes[at] = 0xff;
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::InvalidUtf8 { .. })
    ));
}

#[test]
fn deep_nesting_is_refused() {
    let mut value = Meta::Array(4, vec![Meta::U32(1)]);
    for _ in 0..6 {
        value = Meta::Array(9, vec![value]);
    }
    let mut writer = GgufWriter::new();
    writer.meta("deep", value);
    assert!(matches!(
        Gguf::parse(&writer.build()),
        Err(GgufError::NestingTooDeep { .. })
    ));
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}
