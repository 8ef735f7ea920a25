//! Finding special tokens (`<|im_start|>`, …) written literally in the input text.
//!
//! As llama.cpp does, the special tokens are tried one after the other, longest text first; each
//! one cuts every occurrence out of the text fragments that are still plain text. The plain
//! fragments left at the end are then pre-tokenized and BPE-encoded on their own.

use alloc::vec::Vec;
use core::ops::Range;

/// A piece of the input: plain text (a byte range of it) or an already recognized token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// Cuts every occurrence of `needle` (the text of token `id`) out of the text fragments.
pub fn cut_out(
    text: &[u8],
    fragments: &mut Vec<Fragment>,
    next: &mut Vec<Fragment>,
    needle: &[u8],
    id: u32,
) {
    if needle.is_empty() {
        return;
    }
    next.clear();
    for fragment in fragments.drain(..) {
        let Fragment::Text(range) = fragment else {
            next.push(fragment);
            continue;
        };
        let mut start = range.start;
        while let Some(found) = find(&text[start..range.end], needle) {
            let at = start + found;
            if at > start {
                next.push(Fragment::Text(start..at));
            }
            next.push(Fragment::Token(id));
            start = at + needle.len();
        }
        if start < range.end {
            next.push(Fragment::Text(start..range.end));
        }
    }
    core::mem::swap(fragments, next);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    let first = needle[0];
    (0..=haystack.len() - needle.len())
        .find(|&i| haystack[i] == first && haystack[i..].starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn cuts_every_occurrence() {
        let text = b"<s>a<s><s>b";
        let mut fragments = vec![Fragment::Text(0..text.len())];
        cut_out(text, &mut fragments, &mut Vec::new(), b"<s>", 7);
        assert_eq!(
            fragments,
            vec![
                Fragment::Token(7),
                Fragment::Text(3..4),
                Fragment::Token(7),
                Fragment::Token(7),
                Fragment::Text(10..11),
            ]
        );
    }

    #[test]
    fn leaves_tokens_alone() {
        let text = b"xx<a>";
        let mut fragments = vec![Fragment::Text(0..2), Fragment::Token(1)];
        cut_out(text, &mut fragments, &mut Vec::new(), b"x", 9);
        assert_eq!(
            fragments,
            vec![Fragment::Token(9), Fragment::Token(9), Fragment::Token(1)]
        );
    }
}
