//! The few Unicode properties the pre-tokenizers ask about: letter (`\p{L}`), number (`\p{N}`),
//! punctuation (`\p{P}`) and white space (`\s`).
//!
//! Categories come from a generated range table (`unicode_tables.rs`, Unicode 15.1 like
//! llama.cpp's). White space is Python's / Rust regex's `\s`: the Unicode `White_Space` property,
//! which is the set llama.cpp uses too.

#[path = "unicode_tables.rs"]
mod tables;

/// General-category class of a code point, as far as the pre-tokenizer regexes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    Other = 0,
    Letter = 1,
    Number = 2,
    Punctuation = 3,
}

/// The class of `c`.
pub fn class_of(c: char) -> CharClass {
    let cp = c as u32;
    if cp < 0x80 {
        return ascii_class(cp as u8);
    }
    // Last entry whose first code point is <= cp. Entry 0 starts at 0, so `idx >= 1`.
    let idx = tables::CLASS_RANGES.partition_point(|&entry| entry >> 2 <= cp);
    match tables::CLASS_RANGES[idx - 1] & 3 {
        1 => CharClass::Letter,
        2 => CharClass::Number,
        3 => CharClass::Punctuation,
        _ => CharClass::Other,
    }
}

fn ascii_class(b: u8) -> CharClass {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => CharClass::Letter,
        b'0'..=b'9' => CharClass::Number,
        b'!'..=b'#' | b'%'..=b'*' | b','..=b'/' | b':' | b';' | b'?' | b'@' => {
            CharClass::Punctuation
        }
        b'[' | b'\\' | b']' | b'_' | b'{' | b'}' => CharClass::Punctuation,
        _ => CharClass::Other,
    }
}

pub fn is_letter(c: char) -> bool {
    class_of(c) == CharClass::Letter
}

pub fn is_number(c: char) -> bool {
    class_of(c) == CharClass::Number
}

pub fn is_punctuation(c: char) -> bool {
    class_of(c) == CharClass::Punctuation
}

/// `\s`: the Unicode `White_Space` property.
pub fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_fast_path_agrees_with_the_table() {
        for b in 0u8..0x80 {
            let cp = u32::from(b);
            let idx = tables::CLASS_RANGES.partition_point(|&entry| entry >> 2 <= cp);
            let from_table = tables::CLASS_RANGES[idx - 1] & 3;
            assert_eq!(ascii_class(b) as u32, from_table, "byte {b:#04x}");
        }
    }

    #[test]
    fn classes_of_non_ascii_text() {
        for c in ['Ü', 'ï', 'ç', 'é', '日', 'の', 'テ', 'ß', 'Ω', 'ж'] {
            assert_eq!(class_of(c), CharClass::Letter, "{c}");
        }
        for c in ['²', '½', '٣', 'Ⅻ'] {
            assert_eq!(class_of(c), CharClass::Number, "{c}");
        }
        for c in ['—', '«', '。', '¿'] {
            assert_eq!(class_of(c), CharClass::Punctuation, "{c}");
        }
        for c in [
            '🙂',
            '👍',
            '\u{1F3FD}',
            '€',
            '\u{0301}',
            '\u{00A0}',
            '\u{E000}',
        ] {
            assert_eq!(class_of(c), CharClass::Other, "{c:?}");
        }
        // Unassigned and the last code point.
        assert_eq!(class_of('\u{0378}'), CharClass::Other);
        assert_eq!(class_of('\u{10FFFF}'), CharClass::Other);
    }

    #[test]
    fn white_space_set() {
        for c in [
            ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{A0}', '\u{3000}',
        ] {
            assert!(is_whitespace(c), "{c:?}");
        }
        for c in ['a', '\u{200B}', '\u{FEFF}', '_'] {
            assert!(!is_whitespace(c), "{c:?}");
        }
    }
}
