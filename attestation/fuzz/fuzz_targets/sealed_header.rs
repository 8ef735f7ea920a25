//! The sealed header and the chunk reader on arbitrary disk contents: parse the header, try to
//! authenticate it under a fixed key, and if it does, read the chunks where the header says.
//! The seed corpus holds valid images under that key, so mutations reach the chunk reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_attestation::sealed::{ModelKey, SealedHeader, Unsealer};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SealedHeader::parse(data) {
        // Geometry helpers must not overflow for any header that parses.
        let count = header.chunk_count();
        let _ = header.image_len();
        let _ = header.chunk_offset(count - 1);
        assert_eq!(SealedHeader::parse(&header.encode()).as_ref(), Ok(&header));
    }
    let key = ModelKey::from_bytes([7; 32]);
    let Ok(mut unsealer) = Unsealer::new(&key, data, 0) else {
        return;
    };
    while let Some(loc) = unsealer.next_chunk() {
        // Read where the header says, clipped to the end of the "disk" like a short read.
        let start = usize::try_from(loc.offset).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(loc.len).min(data.len());
        let mut chunk = data[start..end].to_vec();
        if unsealer.open_chunk_in_place(&mut chunk).is_err() {
            return;
        }
    }
    let _ = unsealer.finish();
});
