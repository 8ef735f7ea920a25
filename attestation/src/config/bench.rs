//! The `bench` key: the in-enclave benchmark run once the model is loaded, written as a TOML
//! inline table, `bench = { prompt = 16, gen = 8, repetitions = 2, slots = [1, 2] }`. Every
//! member is optional (omitted: `ward bench`'s defaults, and no batched test without `slots`);
//! unknown or repeated members, and values out of range, are refused.

use core::fmt;

/// Most busy-slot counts one run measures.
pub const MAX_BENCH_SLOT_COUNTS: usize = 8;
/// Longest prompt or generation the benchmark accepts.
pub const MAX_BENCH_TOKENS: u32 = 4096;
/// Most timed runs per test.
pub const MAX_BENCH_REPETITIONS: u32 = 100;

/// What the in-enclave benchmark measures (the lengths and counts of `ward bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Prompt tokens processed in one pass.
    pub prompt: u32,
    /// Tokens decoded one at a time, and batched steps in the slot test.
    pub generate: u32,
    /// Timed runs of each test after one warm-up.
    pub repetitions: u32,
    slots: [u32; MAX_BENCH_SLOT_COUNTS],
    slot_counts: usize,
}

impl Default for BenchConfig {
    /// `ward bench`'s defaults: prompt 128, gen 64, 5 runs, no batched test.
    fn default() -> Self {
        Self {
            prompt: 128,
            generate: 64,
            repetitions: 5,
            slots: [0; MAX_BENCH_SLOT_COUNTS],
            slot_counts: 0,
        }
    }
}

impl BenchConfig {
    /// The busy-slot counts of the batched decode test, in the order given.
    pub fn slots(&self) -> &[u32] {
        &self.slots[..self.slot_counts]
    }

    /// Sets the busy-slot counts; `None` when there are more than [`MAX_BENCH_SLOT_COUNTS`] or
    /// one is outside `1..=max_slots`.
    pub fn with_slots(mut self, slots: &[u32], max_slots: u32) -> Option<Self> {
        if slots.len() > MAX_BENCH_SLOT_COUNTS || slots.iter().any(|&s| s == 0 || s > max_slots) {
            return None;
        }
        self.slots[..slots.len()].copy_from_slice(slots);
        self.slot_counts = slots.len();
        Some(self)
    }

    /// Parses the inline table; `None` for anything malformed or out of range.
    /// `number` parses one integer up to a bound (the configuration's integer syntax).
    pub(super) fn parse(
        text: &str,
        max_slots: u32,
        number: fn(&str, u32) -> Option<u32>,
    ) -> Option<Self> {
        let inner = text.strip_prefix('{')?.strip_suffix('}')?.trim();
        let mut config = Self::default();
        let mut seen = [false; 4];
        if inner.is_empty() {
            return Some(config);
        }
        let (members, count) = split_members(inner)?;
        for member in &members[..count] {
            let (key, value) = member.split_once('=')?;
            let value = value.trim();
            let index = match key.trim() {
                "prompt" => {
                    config.prompt = number(value, MAX_BENCH_TOKENS).filter(|&n| n > 0)?;
                    0
                }
                "gen" => {
                    config.generate = number(value, MAX_BENCH_TOKENS).filter(|&n| n > 0)?;
                    1
                }
                "repetitions" => {
                    config.repetitions = number(value, MAX_BENCH_REPETITIONS).filter(|&n| n > 0)?;
                    2
                }
                "slots" => {
                    let list = value.strip_prefix('[')?.strip_suffix(']')?.trim();
                    let mut counts = [0u32; MAX_BENCH_SLOT_COUNTS];
                    let mut len = 0;
                    if !list.is_empty() {
                        for item in list.split(',') {
                            *counts.get_mut(len)? = number(item.trim(), max_slots)?;
                            len += 1;
                        }
                    }
                    config = config.with_slots(&counts[..len], max_slots)?;
                    3
                }
                _ => return None,
            };
            if core::mem::replace(&mut seen[index], true) {
                return None;
            }
        }
        Some(config)
    }
}

/// The members of an inline table's inside, split at the commas outside `[...]` (at most four:
/// one per key). `None` for unbalanced brackets, an empty member (`a = 1,, b = 2`, a trailing
/// comma) or too many members.
fn split_members(inner: &str) -> Option<([&str; 4], usize)> {
    let mut members = [""; 4];
    let mut count = 0;
    let mut depth = 0u32;
    let mut start = 0;
    // A comma after the end closes the last member.
    for (at, c) in inner
        .char_indices()
        .chain(core::iter::once((inner.len(), ',')))
    {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                let member = inner[start..at].trim();
                if member.is_empty() {
                    return None;
                }
                *members.get_mut(count)? = member;
                count += 1;
                start = at + 1;
            }
            _ => {}
        }
    }
    (depth == 0).then_some((members, count))
}

/// The canonical form: every member, in the documented order.
impl fmt::Display for BenchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ prompt = {}, gen = {}, repetitions = {}, slots = [",
            self.prompt, self.generate, self.repetitions
        )?;
        for (i, slots) in self.slots().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{slots}")?;
        }
        f.write_str("] }")
    }
}
