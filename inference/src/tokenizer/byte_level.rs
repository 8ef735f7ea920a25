//! GPT-2's byte-level alphabet: every byte is spelled by one printable character, so a token's
//! text in the vocabulary is a string of those characters, one per byte.
//!
//! Printable Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves; the other 68
//! bytes are given the code points U+0100, U+0101, … in byte order (so a space is `Ġ`, U+0120,
//! and a newline `Ċ`, U+010A).

/// Whether byte `b` is spelled by the character with the same code point.
const fn is_self_spelled(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

const fn build_byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        let cp = if is_self_spelled(b as u8) {
            b as u32
        } else {
            let cp = next_extra;
            next_extra += 1;
            cp
        };
        table[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => panic!("byte-level code points are all valid"),
        };
        b += 1;
    }
    table
}

static BYTE_TO_CHAR: [char; 256] = build_byte_to_char();

/// The character that spells byte `b`.
pub fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[usize::from(b)]
}

/// Bytes that are not self-spelled, in byte order: U+0100 + n spells `EXTRA_BYTES[n]`.
const EXTRA_BYTES: [u8; 68] = {
    let mut table = [0u8; 68];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if !is_self_spelled(b as u8) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// The byte spelled by `c`, if `c` belongs to the byte-level alphabet.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 {
        let b = cp as u8;
        return is_self_spelled(b).then_some(b);
    }
    EXTRA_BYTES.get((cp - 0x100) as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_spellings() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'\t'), 'ĉ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        assert_eq!(byte_to_char(0xFF), 'ÿ');
    }

    #[test]
    fn round_trip_every_byte() {
        for b in 0u8..=255 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('\u{0144}'), None);
        assert_eq!(char_to_byte('日'), None);
    }
}
