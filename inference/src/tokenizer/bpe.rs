//! Byte-level BPE over one pre-tokenized word.
//!
//! A word's UTF-8 bytes are first spelled in GPT-2's byte alphabet (one symbol per byte), then
//! adjacent symbol pairs are merged, always taking the pair whose merge has the lowest rank (the
//! leftmost such pair on ties), until no listed merge applies. The final symbols are looked up in
//! the vocabulary; a symbol that is not a token falls back to single-byte tokens, as in llama.cpp.
//!
//! Symbols are numbered: ids below the vocabulary size are tokens; strings that appear only in
//! merges get ids after them, so merging never needs a string comparison.

use super::TokenizerError;
use super::byte_level::byte_to_char;
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;

const NO_SYMBOL: u32 = u32::MAX;

/// Every string BPE can produce, with sorted lookup by text.
struct SymbolTable {
    bytes: Vec<u8>,
    /// Symbol `i` is `bytes[ends[i] - len .. ends[i]]`, starting where symbol `i - 1` ends.
    ends: Vec<usize>,
    /// Symbol ids sorted by their text.
    sorted: Vec<u32>,
}

impl SymbolTable {
    fn text(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn push(&mut self, text: &[u8]) -> u32 {
        self.bytes.extend_from_slice(text);
        self.ends.push(self.bytes.len());
        (self.ends.len() - 1) as u32
    }

    fn find(&self, text: &[u8]) -> Option<u32> {
        self.sorted
            .binary_search_by(|&id| self.text(id).cmp(text))
            .ok()
            .map(|i| self.sorted[i])
    }

    fn sort(&mut self) {
        let mut sorted: Vec<u32> = (0..self.len() as u32).collect();
        sorted.sort_unstable_by(|&a, &b| self.text(a).cmp(self.text(b)));
        self.sorted = sorted;
    }
}

/// One applicable merge: the pair of symbols, its rank and the symbol it makes.
#[derive(Clone, Copy)]
struct Merge {
    pair: u64,
    rank: u32,
    result: u32,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// The vocabulary and merge list, ready for encoding.
pub struct BpeModel {
    symbols: SymbolTable,
    n_tokens: u32,
    merges: Vec<Merge>,
    /// Symbol spelling each byte in the byte alphabet (`NO_SYMBOL` if that string is unknown).
    byte_symbol: [u32; 256],
    /// Token whose text is exactly that one raw byte, the last-resort fallback.
    single_byte_token: [u32; 256],
}

impl BpeModel {
    /// Builds the model. `tokens[i]` is the text of token `i`; `merges[r]` is `"left right"`,
    /// the merge of rank `r`.
    pub fn new(tokens: &[&str], merges: &[&str]) -> Result<Self, TokenizerError> {
        let n_tokens = u32::try_from(tokens.len())
            .ok()
            .filter(|&n| n > 0 && n < NO_SYMBOL)
            .ok_or(TokenizerError::BadVocabularySize(tokens.len()))?;
        let mut symbols = SymbolTable {
            bytes: Vec::new(),
            ends: Vec::with_capacity(tokens.len()),
            sorted: Vec::new(),
        };
        for (id, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                // llama.cpp names empty tokens so they stay distinct and unmatchable.
                let mut name = String::from("[EMPTY_");
                push_decimal(&mut name, id);
                name.push(']');
                symbols.push(name.as_bytes());
            } else {
                symbols.push(token.as_bytes());
            }
        }
        symbols.sort();
        if let Some(pair) = symbols
            .sorted
            .windows(2)
            .find(|w| symbols.text(w[0]) == symbols.text(w[1]))
        {
            return Err(TokenizerError::DuplicateToken {
                first: pair[0].min(pair[1]),
                second: pair[0].max(pair[1]),
            });
        }

        // Merge parts and results that are not tokens become extra symbols.
        let mut extras: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut next_extra = n_tokens;
        let mut intern = |symbols: &SymbolTable, text: &[u8]| -> u32 {
            if let Some(id) = symbols.find(text) {
                return id;
            }
            *extras.entry(text.to_vec()).or_insert_with(|| {
                let id = next_extra;
                next_extra += 1;
                id
            })
        };
        let mut merge_list = Vec::with_capacity(merges.len());
        let mut joined = Vec::new();
        for (rank, merge) in merges.iter().enumerate() {
            let bytes = merge.as_bytes();
            // Split at the first space after the first byte, so a left part may itself be " ".
            let Some(space) = bytes.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                return Err(TokenizerError::BadMerge(rank));
            };
            let (left, right) = (&bytes[..space], &bytes[space + 1..]);
            if right.is_empty() {
                return Err(TokenizerError::BadMerge(rank));
            }
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let left = intern(&symbols, left);
            let right = intern(&symbols, right);
            let result = intern(&symbols, &joined);
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::BadMerge(rank))?;
            merge_list.push(Merge {
                pair: pair_key(left, right),
                rank,
                result,
            });
        }
        let mut extras: Vec<(Vec<u8>, u32)> = extras.into_iter().collect();
        extras.sort_unstable_by_key(|&(_, id)| id);
        for (text, id) in extras {
            let pushed = symbols.push(&text);
            debug_assert_eq!(pushed, id);
        }
        symbols.sort();
        // Keep the first (lowest) rank of a pair listed twice, like llama.cpp's map insert.
        merge_list.sort_by_key(|m| (m.pair, m.rank));
        merge_list.dedup_by_key(|m| m.pair);

        let mut byte_symbol = [NO_SYMBOL; 256];
        let mut single_byte_token = [NO_SYMBOL; 256];
        let mut utf8 = [0u8; 4];
        for b in 0..=255u8 {
            let spelled = byte_to_char(b).encode_utf8(&mut utf8);
            byte_symbol[usize::from(b)] = symbols.find(spelled.as_bytes()).unwrap_or(NO_SYMBOL);
            single_byte_token[usize::from(b)] = symbols
                .find(&[b])
                .filter(|&id| id < n_tokens)
                .unwrap_or(NO_SYMBOL);
        }
        Ok(Self {
            symbols,
            n_tokens,
            merges: merge_list,
            byte_symbol,
            single_byte_token,
        })
    }

    /// Text of token `id` as stored in the vocabulary (byte-alphabet spelling for normal tokens).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        (id < self.n_tokens).then(|| self.symbols.text(id))
    }

    /// The token whose vocabulary text is exactly `text`.
    pub fn token_of_text(&self, text: &[u8]) -> Option<u32> {
        self.symbols.find(text).filter(|&id| id < self.n_tokens)
    }

    fn merge_of(&self, left: u32, right: u32) -> Option<Merge> {
        let key = pair_key(left, right);
        self.merges
            .binary_search_by_key(&key, |m| m.pair)
            .ok()
            .map(|i| self.merges[i])
    }

    /// Encodes one pre-tokenized word (raw UTF-8), appending token ids to `out`.
    pub fn encode_word(
        &self,
        word: &[u8],
        ignore_merges: bool,
        scratch: &mut BpeScratch,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        if ignore_merges {
            scratch.spelled.clear();
            let mut utf8 = [0u8; 4];
            for &b in word {
                scratch
                    .spelled
                    .extend_from_slice(byte_to_char(b).encode_utf8(&mut utf8).as_bytes());
            }
            if let Some(id) = self.token_of_text(&scratch.spelled) {
                out.push(id);
                return;
            }
        }

        let nodes = &mut scratch.nodes;
        nodes.clear();
        for (i, &b) in word.iter().enumerate() {
            let symbol = self.byte_symbol[usize::from(b)];
            nodes.push(Node {
                symbol: if symbol == NO_SYMBOL {
                    Symbol::Byte(b)
                } else {
                    Symbol::Known(symbol)
                },
                prev: i.checked_sub(1),
                next: (i + 1 < word.len()).then_some(i + 1),
                alive: true,
            });
        }
        let heap = &mut scratch.heap;
        heap.clear();
        for left in 0..nodes.len().saturating_sub(1) {
            self.push_candidate(nodes, heap, left, left + 1);
        }
        while let Some(Reverse(candidate)) = heap.pop() {
            let (left, right) = (candidate.left, candidate.right);
            // Skip candidates made stale by an earlier merge on either side.
            if !nodes[left].alive
                || !nodes[right].alive
                || nodes[left].next != Some(right)
                || nodes[left].symbol != Symbol::Known(candidate.left_symbol)
                || nodes[right].symbol != Symbol::Known(candidate.right_symbol)
            {
                continue;
            }
            nodes[left].symbol = Symbol::Known(candidate.result);
            nodes[right].alive = false;
            let after = nodes[right].next;
            nodes[left].next = after;
            if let Some(after) = after {
                nodes[after].prev = Some(left);
            }
            if let Some(before) = nodes[left].prev {
                self.push_candidate(nodes, heap, before, left);
            }
            if let Some(after) = after {
                self.push_candidate(nodes, heap, left, after);
            }
        }

        let mut cursor = Some(0);
        while let Some(i) = cursor {
            let node = nodes[i];
            cursor = node.next;
            match node.symbol {
                Symbol::Known(id) if id < self.n_tokens => out.push(id),
                Symbol::Known(id) => self.push_byte_fallback(self.symbols.text(id), out),
                Symbol::Byte(b) => {
                    let mut utf8 = [0u8; 4];
                    let spelled = byte_to_char(b).encode_utf8(&mut utf8);
                    self.push_byte_fallback(spelled.as_bytes(), out);
                }
            }
        }
    }

    fn push_candidate(
        &self,
        nodes: &[Node],
        heap: &mut BinaryHeap<Reverse<Candidate>>,
        left: usize,
        right: usize,
    ) {
        let (Symbol::Known(l), Symbol::Known(r)) = (nodes[left].symbol, nodes[right].symbol) else {
            return;
        };
        if let Some(merge) = self.merge_of(l, r) {
            heap.push(Reverse(Candidate {
                rank: merge.rank,
                left,
                right,
                left_symbol: l,
                right_symbol: r,
                result: merge.result,
            }));
        }
    }

    /// A symbol that is not a token: emit the tokens of its single bytes, skipping bytes that
    /// have none (what llama.cpp does).
    fn push_byte_fallback(&self, text: &[u8], out: &mut Vec<u32>) {
        for &b in text {
            let id = self.single_byte_token[usize::from(b)];
            if id != NO_SYMBOL {
                out.push(id);
            }
        }
    }
}

fn push_decimal(s: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits[..len].iter().rev() {
        s.push(char::from(d));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Symbol {
    Known(u32),
    /// A byte whose byte-alphabet spelling is not even a symbol.
    Byte(u8),
}

#[derive(Debug, Clone, Copy)]
struct Node {
    symbol: Symbol,
    prev: Option<usize>,
    next: Option<usize>,
    alive: bool,
}

/// A possible merge; ordered by rank, then by position (leftmost first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    left_symbol: u32,
    right_symbol: u32,
    result: u32,
}

/// Buffers reused across words.
#[derive(Default)]
pub struct BpeScratch {
    nodes: Vec<Node>,
    heap: BinaryHeap<Reverse<Candidate>>,
    spelled: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A vocabulary over the byte alphabet for "a", "b", " " plus a few merges.
    fn model() -> BpeModel {
        let tokens = ["a", "b", "Ġ", "ab", "Ġa", "Ġab", "aa", "!"];
        let merges = ["a b", "Ġ a", "Ġa b", "a a"];
        BpeModel::new(&tokens, &merges).expect("valid model")
    }

    fn encode(model: &BpeModel, word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        model.encode_word(word.as_bytes(), false, &mut BpeScratch::default(), &mut out);
        out
    }

    #[test]
    fn lowest_rank_first() {
        let m = model();
        // "a b" (rank 0) beats "Ġ a" (rank 1): " ab" -> Ġ + ab, and "Ġ ab" is not a merge.
        assert_eq!(encode(&m, " ab"), vec![2, 3]);
        assert_eq!(encode(&m, " a"), vec![4]);
        assert_eq!(encode(&m, "ab"), vec![3]);
    }

    #[test]
    fn leftmost_on_equal_rank() {
        let m = model();
        assert_eq!(encode(&m, "aaa"), vec![6, 0]);
        assert_eq!(encode(&m, "aaaa"), vec![6, 6]);
    }

    #[test]
    fn unknown_bytes_fall_back_or_vanish() {
        let m = model();
        // "c" is not in the vocabulary at all and has no single-byte token: dropped.
        assert_eq!(encode(&m, "cab"), vec![3]);
        assert_eq!(encode(&m, "!"), vec![7]);
    }

    #[test]
    fn merge_results_outside_the_vocabulary() {
        let tokens = ["x", "y", "z", "xyz"];
        let merges = ["x y", "xy z"];
        let m = BpeModel::new(&tokens, &merges).expect("valid model");
        assert_eq!(encode(&m, "xyz"), vec![3]);
        // "xy" is only a merge result: it falls back to its single bytes.
        assert_eq!(encode(&m, "xy"), vec![0, 1]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            BpeModel::new(&["a", "a"], &[]),
            Err(TokenizerError::DuplicateToken {
                first: 0,
                second: 1
            })
        ));
        assert!(matches!(
            BpeModel::new(&["a"], &["ab"]),
            Err(TokenizerError::BadMerge(0))
        ));
        assert!(matches!(
            BpeModel::new(&[], &[]),
            Err(TokenizerError::BadVocabularySize(0))
        ));
    }
}
