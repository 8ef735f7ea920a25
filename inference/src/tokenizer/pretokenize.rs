//! Pre-tokenizers: split text into the words that BPE merges never cross.
//!
//! Each model names its pre-tokenizer in `tokenizer.ggml.pre`; each pre-tokenizer is a list of
//! regexes applied in turn, every regex splitting each piece left by the previous one (matches
//! and the gaps between them both become pieces). We hand-code the regexes as llama.cpp's
//! `unicode.cpp` does, including its exact treatment of piece boundaries (a look-ahead never sees
//! past the end of the current piece), because the token ids must match it exactly.
//!
//! | pre-tokenizer | regexes |
//! |---|---|
//! | `Gpt2` | `'s\|'t\|'re\|'ve\|'m\|'ll\|'d\| ?\p{L}+\| ?\p{N}+\| ?[^\s\p{L}\p{N}]+\|\s+(?!\S)\|\s+` |
//! | `DigitsThenGpt2` (SmolLM, StarCoder…) | `\p{N}`, then `Gpt2` |
//! | `Llama3` | `(?i:'s\|'t\|'re\|'ve\|'m\|'ll\|'d)\|[^\r\n\p{L}\p{N}]?\p{L}+\|\p{N}{1,3}\| ?[^\s\p{L}\p{N}]+[\r\n]*\|\s*[\r\n]+\|\s+(?!\S)\|\s+` |
//! | `Default` | `[\p{P}\$\+<=>\^~\|]+`, then `Gpt2`, then `\p{N}+`, then `[0-9][0-9][0-9]` |

use super::unicode::{is_letter, is_number, is_punctuation, is_whitespace};
use alloc::vec::Vec;
use core::ops::Range;

/// A pre-tokenizer llama.cpp knows by the name in `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex alone.
    Gpt2,
    /// Every number code point on its own, then GPT-2's regex (SmolLM, StarCoder, Refact…).
    DigitsThenGpt2,
    /// LLaMA 3's regex. `ignore_merges`: a word that is already a token is not merged further.
    Llama3 { ignore_merges: bool },
    /// llama.cpp's fallback when a BPE model names no pre-tokenizer (or names `default`).
    Default,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value; `None` for names not supported here.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "" | "default" => Self::Default,
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de"
            | "jina-v2-es" | "jina-v2-de" | "trillion" | "granite-docling" | "exaone4" => {
                Self::Gpt2
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::DigitsThenGpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => Self::Llama3 {
                ignore_merges: true,
            },
            "dbrx" | "smaug-bpe" => Self::Llama3 {
                ignore_merges: false,
            },
            _ => return None,
        })
    }

    /// Whether a word found whole in the vocabulary is emitted as that token without merging.
    pub fn ignores_merges(self) -> bool {
        matches!(
            self,
            Self::Llama3 {
                ignore_merges: true
            }
        )
    }

    /// Whether llama.cpp adds BOS for this pre-tokenizer when the metadata does not say.
    pub fn adds_bos_by_default(self) -> bool {
        matches!(
            self,
            Self::Llama3 {
                ignore_merges: true
            }
        )
    }

    /// Splits `text` into words, appended to `words` as byte ranges of `text`.
    pub fn split(self, text: &str, words: &mut Vec<Range<usize>>) {
        let cpts: Vec<char> = text.chars().collect();
        let mut pieces = Vec::with_capacity(4);
        if !cpts.is_empty() {
            pieces.push(cpts.len());
        }
        let mut next = Vec::with_capacity(cpts.len() / 2 + 1);
        let mut stage = |f: fn(&[char], usize, usize, &mut Vec<usize>), pieces: &mut Vec<usize>| {
            next.clear();
            let mut start = 0;
            for &len in pieces.iter() {
                f(&cpts, start, start + len, &mut next);
                start += len;
            }
            core::mem::swap(pieces, &mut next);
        };
        match self {
            Self::Gpt2 => stage(split_gpt2, &mut pieces),
            Self::DigitsThenGpt2 => {
                stage(split_each_number, &mut pieces);
                stage(split_gpt2, &mut pieces);
            }
            Self::Llama3 { .. } => stage(split_llama3, &mut pieces),
            Self::Default => {
                stage(split_punctuation_runs, &mut pieces);
                stage(split_gpt2, &mut pieces);
                stage(split_number_runs, &mut pieces);
                stage(split_ascii_digit_triples, &mut pieces);
            }
        }
        let mut byte = 0;
        let mut cp = 0;
        for len in pieces {
            let start = byte;
            for c in &cpts[cp..cp + len] {
                byte += c.len_utf8();
            }
            cp += len;
            words.push(start..byte);
        }
    }
}

/// Records piece lengths for one input piece `[ini, end)`, in code points.
struct Pieces<'a> {
    out: &'a mut Vec<usize>,
    prev_end: usize,
}

impl Pieces<'_> {
    /// Ends a piece at `end` (nothing if empty); returns its length.
    fn cut(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// The code point at `pos`, or `None` past the end of the current piece.
fn at(cpts: &[char], end: usize, pos: usize) -> Option<char> {
    if pos < end { Some(cpts[pos]) } else { None }
}

fn letter_at(cpts: &[char], end: usize, pos: usize) -> bool {
    at(cpts, end, pos).is_some_and(is_letter)
}

fn number_at(cpts: &[char], end: usize, pos: usize) -> bool {
    at(cpts, end, pos).is_some_and(is_number)
}

fn whitespace_at(cpts: &[char], end: usize, pos: usize) -> bool {
    at(cpts, end, pos).is_some_and(is_whitespace)
}

/// `[^\s\p{L}\p{N}]` at `pos` (false past the end of the piece).
fn other_at(cpts: &[char], end: usize, pos: usize) -> bool {
    at(cpts, end, pos).is_some_and(|c| !is_whitespace(c) && !is_letter(c) && !is_number(c))
}

/// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) starting at `pos`, if
/// any; `fold` maps a letter before comparing (identity or ASCII lowercase).
fn contraction_len(cpts: &[char], end: usize, pos: usize, fold: fn(char) -> char) -> usize {
    if cpts[pos] != '\'' || pos + 1 >= end {
        return 0;
    }
    let next = fold(cpts[pos + 1]);
    if matches!(next, 's' | 't' | 'm' | 'd') {
        return 2;
    }
    if pos + 2 < end {
        let next_next = fold(cpts[pos + 2]);
        if matches!((next, next_next), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return 3;
        }
    }
    0
}

/// Number of white-space code points starting at `pos`.
fn whitespace_run(cpts: &[char], end: usize, pos: usize) -> usize {
    let mut n = 0;
    while whitespace_at(cpts, end, pos + n) {
        n += 1;
    }
    n
}

fn split_gpt2(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    let mut pieces = Pieces { out, prev_end: ini };
    let mut pos = ini;
    while pos < end {
        let c = cpts[pos];
        let contraction = contraction_len(cpts, end, pos, |c| c);
        if contraction > 0 {
            pos += pieces.cut(pos + contraction);
            continue;
        }
        // ` ?X+`: an optional space glued to the run that follows it.
        let run_start = pos + usize::from(c == ' ');
        if letter_at(cpts, end, run_start) {
            pos = run_start;
            while letter_at(cpts, end, pos) {
                pos += 1;
            }
            pieces.cut(pos);
            continue;
        }
        if number_at(cpts, end, run_start) {
            pos = run_start;
            while number_at(cpts, end, pos) {
                pos += 1;
            }
            pieces.cut(pos);
            continue;
        }
        if other_at(cpts, end, run_start) {
            pos = run_start;
            while other_at(cpts, end, pos) {
                pos += 1;
            }
            pieces.cut(pos);
            continue;
        }
        let spaces = whitespace_run(cpts, end, pos);
        // `\s+(?!\S)`: leave the last space to prefix the next word, unless the piece ends here.
        if spaces > 1 && pos + spaces < end {
            pos += spaces - 1;
            pieces.cut(pos);
            continue;
        }
        if spaces > 0 {
            pos += spaces;
            pieces.cut(pos);
            continue;
        }
        pos += 1;
        pieces.cut(pos);
    }
}

fn split_llama3(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    let mut pieces = Pieces { out, prev_end: ini };
    let mut pos = ini;
    while pos < end {
        let c = cpts[pos];
        let contraction = contraction_len(cpts, end, pos, |c| c.to_ascii_lowercase());
        if contraction > 0 {
            pos += pieces.cut(pos + contraction);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(c == '\r' || c == '\n' || is_number(c))
            && (is_letter(c) || letter_at(cpts, end, pos + 1))
        {
            pos += 1;
            while letter_at(cpts, end, pos) {
                pos += 1;
            }
            pieces.cut(pos);
            continue;
        }
        // `\p{N}{1,3}`
        if is_number(c) {
            let mut group_start = pos;
            while number_at(cpts, end, pos) {
                pos += 1;
                if pos - group_start >= 3 {
                    pieces.cut(pos);
                    group_start = pos;
                }
            }
            pieces.cut(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`. A lone space at the very end of the piece also lands here
        // (llama.cpp tests the look-ahead code point, which is "nothing", for not being a
        // letter, number or space); it makes the same one-space piece that `\s+` would.
        let after_space = pos + usize::from(c == ' ');
        if other_at(cpts, end, after_space) || (c == ' ' && after_space >= end) {
            pos = after_space;
            while other_at(cpts, end, pos) {
                pos += 1;
            }
            while matches!(at(cpts, end, pos), Some('\r' | '\n')) {
                pos += 1;
            }
            pieces.cut(pos);
            continue;
        }
        let spaces = whitespace_run(cpts, end, pos);
        // `\s*[\r\n]+`: up to and including the last line break of the white-space run.
        if let Some(last_break) = (0..spaces)
            .rev()
            .find(|&i| matches!(cpts[pos + i], '\r' | '\n'))
        {
            pos += last_break + 1;
            pieces.cut(pos);
            continue;
        }
        if spaces > 1 && pos + spaces < end {
            pos += spaces - 1;
            pieces.cut(pos);
            continue;
        }
        if spaces > 0 {
            pos += spaces;
            pieces.cut(pos);
            continue;
        }
        pos += 1;
        pieces.cut(pos);
    }
}

/// `\p{N}`: each number code point is a piece; the text between them too.
fn split_each_number(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    let mut pieces = Pieces { out, prev_end: ini };
    for (pos, &c) in cpts.iter().enumerate().take(end).skip(ini) {
        if is_number(c) {
            pieces.cut(pos);
            pieces.cut(pos + 1);
        }
    }
    pieces.cut(end);
}

/// Splits `[ini, end)` into maximal runs where `pred` holds and the gaps between them.
fn split_runs(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>, pred: fn(char) -> bool) {
    let mut pieces = Pieces { out, prev_end: ini };
    let mut pos = ini;
    while pos < end {
        if pred(cpts[pos]) {
            pieces.cut(pos);
            while pos < end && pred(cpts[pos]) {
                pos += 1;
            }
            pieces.cut(pos);
        } else {
            pos += 1;
        }
    }
    pieces.cut(end);
}

/// `[\p{P}\$\+<=>\^~\|]+`
fn split_punctuation_runs(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    split_runs(cpts, ini, end, out, |c| {
        is_punctuation(c) || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
    });
}

/// `\p{N}+`
fn split_number_runs(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    split_runs(cpts, ini, end, out, is_number);
}

/// `[0-9][0-9][0-9]`: successive non-overlapping triples of ASCII digits.
fn split_ascii_digit_triples(cpts: &[char], ini: usize, end: usize, out: &mut Vec<usize>) {
    let mut pieces = Pieces { out, prev_end: ini };
    let mut pos = ini;
    while pos + 3 <= end {
        if cpts[pos..pos + 3].iter().all(char::is_ascii_digit) {
            pieces.cut(pos);
            pieces.cut(pos + 3);
            pos += 3;
        } else {
            pos += 1;
        }
    }
    pieces.cut(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut ranges = Vec::new();
        pre.split(text, &mut ranges);
        ranges.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_words() {
        let pre = PreTokenizer::Gpt2;
        assert_eq!(words(pre, "Hello world"), vec!["Hello", " world"]);
        assert_eq!(
            words(pre, "I'm here, you're there"),
            vec!["I", "'m", " here", ",", " you", "'re", " there"]
        );
        assert_eq!(words(pre, "x  y   z"), vec!["x", " ", " y", "  ", " z"]);
        assert_eq!(words(pre, "end  "), vec!["end", "  "]);
        assert_eq!(words(pre, "a\n\nb"), vec!["a", "\n", "\n", "b"]);
        assert_eq!(words(pre, "12345 + 678"), vec!["12345", " +", " 678"]);
        assert_eq!(words(pre, "café—naïve"), vec!["café", "—", "naïve"]);
        assert_eq!(words(pre, ""), Vec::<&str>::new());
    }

    #[test]
    fn smollm_splits_every_digit_first() {
        let pre = PreTokenizer::DigitsThenGpt2;
        assert_eq!(
            words(pre, "12345 + 678"),
            vec!["1", "2", "3", "4", "5", " +", " ", "6", "7", "8"]
        );
        assert_eq!(
            words(pre, "x**2  # c"),
            vec!["x", "**", "2", " ", " #", " c"]
        );
    }

    #[test]
    fn llama3_words() {
        let pre = PreTokenizer::Llama3 {
            ignore_merges: true,
        };
        assert_eq!(
            words(pre, "I'M 1234567"),
            vec!["I", "'M", " ", "123", "456", "7"]
        );
        assert_eq!(words(pre, "a  \n\n b"), vec!["a", "  \n\n", " b"]);
        assert_eq!(words(pre, "(x)\n"), vec!["(x", ")\n"]);
        assert_eq!(words(pre, "end "), vec!["end", " "]);
    }

    #[test]
    fn default_words() {
        let pre = PreTokenizer::Default;
        assert_eq!(words(pre, "a+b=1234"), vec!["a", "+", "b", "=", "123", "4"]);
    }

    #[test]
    fn names() {
        assert_eq!(
            PreTokenizer::from_name("smollm"),
            Some(PreTokenizer::DigitsThenGpt2)
        );
        assert_eq!(PreTokenizer::from_name("gpt-2"), Some(PreTokenizer::Gpt2));
        assert!(PreTokenizer::from_name("llama-bpe").is_some_and(PreTokenizer::ignores_merges));
        assert_eq!(PreTokenizer::from_name("qwen2"), None);
    }
}
