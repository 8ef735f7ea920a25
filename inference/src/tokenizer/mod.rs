//! GPT-2-style byte-level BPE tokenizer, built from a GGUF model's `tokenizer.ggml.*` metadata
//! and token-exact with llama.cpp (`llama_tokenize(..., add_special = true, parse_special)`).
//!
//! # Use
//!
//! ```ignore
//! let tokenizer = Tokenizer::from_gguf(&gguf)?;          // or Tokenizer::new(&Vocabulary { .. })
//! let ids: Vec<u32> = tokenizer.encode("<|im_start|>user\nHi", true); // parse special tokens
//! let mut decoder = tokenizer.decoder();                 // streaming detokenizer
//! for &id in &generated {
//!     if tokenizer.is_end_of_generation(id) { break; }
//!     if let Some(text) = decoder.push(id) { print!("{text}"); } // only complete UTF-8
//! }
//! print!("{}", decoder.finish());                        // flushes an unfinished character
//! ```
//!
//! # What it does
//!
//! 1. Special tokens (control, user-defined and unknown token types) written literally in the text
//!    are cut out first, longest text first (`parse_special = false` only cuts user-defined ones).
//! 2. The remaining text fragments are split into words by the pre-tokenizer that
//!    `tokenizer.ggml.pre` names ([`PreTokenizer`]).
//! 3. Each word is spelled in GPT-2's byte alphabet and merged by `tokenizer.ggml.merges` rank.
//! 4. BOS is prepended only if `tokenizer.ggml.add_bos_token` says so (EOS likewise with
//!    `add_eos_token`); without the key, llama.cpp's default for the pre-tokenizer applies.
//!
//! Detokenization maps each token back to bytes (control tokens render as their text only when
//! asked); [`StreamDecoder`] holds back the bytes of a character split across tokens.
//!
//! Not supported (typed errors): tokenizer models other than `gpt2`, and pre-tokenizers that
//! llama.cpp implements with general regexes rather than hand-written splitters (qwen2, …).
//! llama.cpp's per-model `lstrip`/`rstrip` attributes (phi-3, jina) and its `clean_spaces`
//! detokenizer pass are not applied.

mod bpe;
mod byte_level;
mod decode;
mod gguf_metadata;
mod pretokenize;
mod special;
mod unicode;

pub use decode::StreamDecoder;
pub use pretokenize::PreTokenizer;

use alloc::string::String;
use alloc::vec::Vec;
use bpe::{BpeModel, BpeScratch};
use core::fmt;
use special::Fragment;

/// The kind of a token (`tokenizer.ggml.token_type`; llama.cpp's `LLAMA_TOKEN_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// The type for a GGUF `token_type` value; values llama.cpp does not know are `Undefined`.
    pub fn from_gguf(value: i32) -> Self {
        match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }

    /// Control and unknown tokens: hidden in decoded text unless special tokens are rendered.
    fn is_hidden_by_default(self) -> bool {
        matches!(self, Self::Control | Self::Unknown)
    }

    /// Token types recognized when written literally in input text.
    fn is_matched_in_text(self) -> bool {
        matches!(self, Self::Control | Self::UserDefined | Self::Unknown)
    }
}

/// Special token ids named in the metadata (`tokenizer.ggml.*_token_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokenIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// End of message.
    pub eom: Option<u32>,
    pub unknown: Option<u32>,
    pub padding: Option<u32>,
    pub separator: Option<u32>,
}

/// Everything the tokenizer is built from, as plain data (what the GGUF metadata holds).
#[derive(Debug, Clone, Copy)]
pub struct Vocabulary<'a> {
    /// `tokenizer.ggml.model`; only `gpt2` (byte-level BPE) is supported.
    pub model: &'a str,
    /// `tokenizer.ggml.tokens`: token id -> text.
    pub tokens: &'a [&'a str],
    /// `tokenizer.ggml.token_type`, or empty (then every token is normal).
    pub token_types: &'a [i32],
    /// `tokenizer.ggml.merges`: `"left right"`, in rank order.
    pub merges: &'a [&'a str],
    /// `tokenizer.ggml.pre` (empty when absent).
    pub pre_tokenizer: &'a str,
    pub special: SpecialTokenIds,
    /// `tokenizer.ggml.add_bos_token`, if present.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`, if present.
    pub add_eos: Option<bool>,
}

/// Why a tokenizer could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type (the GGUF reader's message).
    Metadata(String),
    UnsupportedModel(String),
    UnsupportedPreTokenizer(String),
    BadVocabularySize(usize),
    /// `token_type` has a different length than `tokens`.
    TokenTypeCount {
        tokens: usize,
        types: usize,
    },
    DuplicateToken {
        first: u32,
        second: u32,
    },
    /// Merge at this rank is not `"left right"`.
    BadMerge(usize),
    /// A special token id (named by the metadata key) is not in the vocabulary.
    SpecialTokenOutOfRange {
        key: &'static str,
        id: u32,
    },
    /// `add_bos_token` / `add_eos_token` is set but the token id is not.
    MissingSpecialToken(&'static str),
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Metadata(msg) => write!(f, "tokenizer metadata: {msg}"),
            Self::UnsupportedModel(m) => {
                write!(
                    f,
                    "tokenizer model {m:?} is not supported (only \"gpt2\" byte-level BPE)"
                )
            }
            Self::UnsupportedPreTokenizer(p) => write!(f, "pre-tokenizer {p:?} is not supported"),
            Self::BadVocabularySize(n) => write!(f, "vocabulary of {n} tokens is not usable"),
            Self::TokenTypeCount { tokens, types } => {
                write!(f, "{types} token types for {tokens} tokens")
            }
            Self::DuplicateToken { first, second } => {
                write!(f, "tokens {first} and {second} have the same text")
            }
            Self::BadMerge(rank) => write!(f, "merge {rank} is not two space-separated parts"),
            Self::SpecialTokenOutOfRange { key, id } => {
                write!(f, "{key} = {id} is outside the vocabulary")
            }
            Self::MissingSpecialToken(key) => write!(f, "{key} is required but not set"),
        }
    }
}

impl core::error::Error for TokenizerError {}

/// Token texts llama.cpp treats as ending generation (by text, as it does).
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
];

/// Fill-in-the-middle pad / repo / file-separator tokens, which llama.cpp also ends on.
const FIM_END_TEXTS: &[&[&str]] = &[
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

/// A byte-level BPE tokenizer (see the module documentation).
pub struct Tokenizer {
    bpe: BpeModel,
    types: Vec<TokenType>,
    pre: PreTokenizer,
    special: SpecialTokenIds,
    add_bos: bool,
    add_eos: bool,
    /// Sorted ids that end generation.
    end_of_generation: Vec<u32>,
    /// Tokens matched literally in text, longest text first.
    matched_in_text: Vec<u32>,
    /// Decoded bytes of each token (special tokens: their text).
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("tokens", &self.types.len())
            .field("pre", &self.pre)
            .field("special", &self.special)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from plain vocabulary data.
    pub fn new(vocabulary: &Vocabulary<'_>) -> Result<Self, TokenizerError> {
        if vocabulary.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(vocabulary.model.into()));
        }
        let pre = PreTokenizer::from_name(vocabulary.pre_tokenizer).ok_or_else(|| {
            TokenizerError::UnsupportedPreTokenizer(vocabulary.pre_tokenizer.into())
        })?;
        let bpe = BpeModel::new(vocabulary.tokens, vocabulary.merges)?;
        let n = vocabulary.tokens.len();
        let mut types: Vec<TokenType> = if vocabulary.token_types.is_empty() {
            alloc::vec![TokenType::Normal; n]
        } else if vocabulary.token_types.len() == n {
            vocabulary
                .token_types
                .iter()
                .map(|&t| TokenType::from_gguf(t))
                .collect()
        } else {
            return Err(TokenizerError::TokenTypeCount {
                tokens: n,
                types: vocabulary.token_types.len(),
            });
        };

        let special = vocabulary.special;
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", special.bos),
            ("tokenizer.ggml.eos_token_id", special.eos),
            ("tokenizer.ggml.eot_token_id", special.eot),
            ("tokenizer.ggml.eom_token_id", special.eom),
            ("tokenizer.ggml.unknown_token_id", special.unknown),
            ("tokenizer.ggml.padding_token_id", special.padding),
            ("tokenizer.ggml.seperator_token_id", special.separator),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(TokenizerError::SpecialTokenOutOfRange { key, id });
            }
        }
        let add_bos = vocabulary.add_bos.unwrap_or(pre.adds_bos_by_default());
        let add_eos = vocabulary.add_eos.unwrap_or(false);
        if add_bos && special.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken(
                "tokenizer.ggml.bos_token_id",
            ));
        }
        if add_eos && special.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken(
                "tokenizer.ggml.eos_token_id",
            ));
        }

        let end_of_generation = end_of_generation_ids(&bpe, &special, &mut types);

        let mut matched_in_text: Vec<u32> = (0..n as u32)
            .filter(|&id| types[id as usize].is_matched_in_text())
            .collect();
        matched_in_text.sort_by_key(|&id| core::cmp::Reverse(token_text_len(&bpe, id)));

        let mut pieces = Vec::new();
        let mut piece_ends = Vec::with_capacity(n);
        for id in 0..n as u32 {
            decode::append_piece(&bpe, id, types[id as usize], &mut pieces);
            piece_ends.push(pieces.len());
        }

        Ok(Self {
            bpe,
            types,
            pre,
            special,
            add_bos,
            add_eos,
            end_of_generation,
            matched_in_text,
            pieces,
            piece_ends,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn n_tokens(&self) -> usize {
        self.types.len()
    }

    pub fn special_tokens(&self) -> SpecialTokenIds {
        self.special
    }

    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Whether [`encode`](Self::encode) prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The token's text as the vocabulary stores it (byte-alphabet spelling for normal tokens).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.bpe.token_text(id)
    }

    /// The token whose vocabulary text is exactly `text` (e.g. `"<|im_end|>"`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.bpe.token_of_text(text.as_bytes())
    }

    /// Whether generation stops at this token (EOS, end of turn, and the tokens llama.cpp ends
    /// on by their text, e.g. `<|im_end|>`, `<|endoftext|>`).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, sorted.
    pub fn end_of_generation_tokens(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Tokenizes `text` like `llama_tokenize(text, add_special = true, parse_special)`: BOS/EOS
    /// as the metadata says, special tokens written in the text recognized if `parse_special`.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, true, parse_special, &mut out);
        out
    }

    /// Appends the tokens of `text` to `out`; `add_special` adds BOS/EOS as the metadata says.
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) {
        if add_special && self.add_bos {
            out.extend(self.special.bos);
        }
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(0..text.len()));
        }
        let mut next = Vec::new();
        for &id in &self.matched_in_text {
            let kind = self.types[id as usize];
            if !parse_special && kind != TokenType::UserDefined {
                continue;
            }
            if let Some(needle) = self.bpe.token_text(id) {
                special::cut_out(text.as_bytes(), &mut fragments, &mut next, needle, id);
            }
        }
        let mut words = Vec::new();
        let mut scratch = BpeScratch::default();
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(range) => {
                    // Special-token texts are valid UTF-8 (they come from `&str`), so cutting
                    // them out leaves fragments on character boundaries.
                    let Some(fragment_text) = text.get(range) else {
                        continue;
                    };
                    words.clear();
                    self.pre.split(fragment_text, &mut words);
                    for word in &words {
                        self.bpe.encode_word(
                            &fragment_text.as_bytes()[word.clone()],
                            self.pre.ignores_merges(),
                            &mut scratch,
                            out,
                        );
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
    }

    /// The bytes token `id` stands for. Control and unknown tokens give their text only when
    /// `render_special`; unused tokens and ids outside the vocabulary give nothing.
    pub fn piece(&self, id: u32, render_special: bool) -> &[u8] {
        let Some(kind) = self.token_type(id) else {
            return &[];
        };
        if kind.is_hidden_by_default() && !render_special {
            return &[];
        }
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        &self.pieces[start..self.piece_ends[i]]
    }

    /// Decodes a whole sequence (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id, render_special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A streaming decoder that renders control tokens as nothing.
    pub fn decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self, false)
    }

    /// A streaming decoder; `render_special` shows control tokens as their text.
    pub fn decoder_with(&self, render_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, render_special)
    }
}

fn token_text_len(bpe: &BpeModel, id: u32) -> usize {
    bpe.token_text(id).map_or(0, <[u8]>::len)
}

/// llama.cpp's end-of-generation set: EOS/EOT/EOM ids, tokens with end-of-turn texts, and the
/// first FIM pad / repo / separator token of each kind. Tokens found by text become control
/// tokens (as llama.cpp overrides their type).
fn end_of_generation_ids(
    bpe: &BpeModel,
    special: &SpecialTokenIds,
    types: &mut [TokenType],
) -> Vec<u32> {
    let mut by_text: Vec<u32> = END_OF_GENERATION_TEXTS
        .iter()
        .filter_map(|text| bpe.token_of_text(text.as_bytes()))
        .collect();
    for texts in FIM_END_TEXTS {
        by_text.extend(
            texts
                .iter()
                .filter_map(|t| bpe.token_of_text(t.as_bytes()))
                .min(),
        );
    }
    for &id in &by_text {
        types[id as usize] = TokenType::Control;
    }
    let mut ids = by_text;
    ids.extend(
        [special.eos, special.eot, special.eom]
            .into_iter()
            .flatten(),
    );
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const TOKENS: &[&str] = &[
        "<s>",
        "</s>",
        "<|im_end|>",
        "<user>",
        "h",
        "i",
        "Ġ",
        "hi",
        "Ġhi",
    ];
    const TYPES: &[i32] = &[3, 3, 1, 4, 1, 1, 1, 1, 1];
    const MERGES: &[&str] = &["h i", "Ġ hi"];

    fn vocabulary(add_bos: Option<bool>) -> Vocabulary<'static> {
        Vocabulary {
            model: "gpt2",
            tokens: TOKENS,
            token_types: TYPES,
            merges: MERGES,
            pre_tokenizer: "gpt-2",
            special: SpecialTokenIds {
                bos: Some(0),
                eos: Some(1),
                ..SpecialTokenIds::default()
            },
            add_bos,
            add_eos: None,
        }
    }

    #[test]
    fn bos_only_when_the_metadata_says() {
        let without = Tokenizer::new(&vocabulary(Some(false))).expect("tokenizer");
        assert_eq!(without.encode("hi hi", true), vec![7, 8]);
        let with = Tokenizer::new(&vocabulary(Some(true))).expect("tokenizer");
        assert_eq!(with.encode("hi hi", true), vec![0, 7, 8]);
        let mut out = Vec::new();
        with.encode_into("hi", false, true, &mut out);
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn special_and_user_defined_tokens_in_text() {
        let t = Tokenizer::new(&vocabulary(None)).expect("tokenizer");
        assert_eq!(t.encode("<s>hi<user> hi</s>", true), vec![0, 7, 3, 8, 1]);
        // Without special parsing, user-defined tokens are still matched; control ones are not.
        let plain = t.encode("<s><user>", false);
        assert_eq!(plain.last(), Some(&3));
        assert!(!plain.contains(&0));
    }

    #[test]
    fn end_of_generation_and_pieces() {
        let t = Tokenizer::new(&vocabulary(None)).expect("tokenizer");
        assert_eq!(t.end_of_generation_tokens(), &[1, 2]);
        // "<|im_end|>" is listed as normal; like llama.cpp we treat it as a control token.
        assert_eq!(t.token_type(2), Some(TokenType::Control));
        assert_eq!(t.piece(8, false), b" hi");
        assert_eq!(t.piece(2, false), b"");
        assert_eq!(t.piece(2, true), b"<|im_end|>");
        assert_eq!(t.piece(3, false), b"<user>");
        assert_eq!(t.piece(99, true), b"");
    }

    #[test]
    fn typed_errors() {
        let mut v = vocabulary(None);
        v.model = "llama";
        assert!(matches!(
            Tokenizer::new(&v),
            Err(TokenizerError::UnsupportedModel(_))
        ));
        let mut v = vocabulary(None);
        v.pre_tokenizer = "qwen2";
        assert!(matches!(
            Tokenizer::new(&v),
            Err(TokenizerError::UnsupportedPreTokenizer(_))
        ));
        let mut v = vocabulary(None);
        v.token_types = &[1, 1];
        assert!(matches!(
            Tokenizer::new(&v),
            Err(TokenizerError::TokenTypeCount { .. })
        ));
        let mut v = vocabulary(Some(true));
        v.special.bos = None;
        assert!(matches!(
            Tokenizer::new(&v),
            Err(TokenizerError::MissingSpecialToken(_))
        ));
        let mut v = vocabulary(None);
        v.special.eos = Some(1000);
        assert!(matches!(
            Tokenizer::new(&v),
            Err(TokenizerError::SpecialTokenOutOfRange { id: 1000, .. })
        ));
    }
}
