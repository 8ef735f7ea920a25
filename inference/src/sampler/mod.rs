//! Choosing the next token from the logits, with llama.cpp's semantics.
//!
//! ```ignore
//! let mut sampler = Sampler::new(SamplerConfig { temperature: 0.7, top_p: 0.9, seed: 7, ..SamplerConfig::greedy() });
//! let mut stops = StopStrings::new(&["\nUser:"]);
//! loop {
//!     let logits: &mut [f32] = engine.forward(...);
//!     let id = sampler.sample(logits, &history)?;       // history: prompt + generated ids
//!     if tokenizer.is_end_of_generation(id) { break; }
//!     history.push(id);
//!     if let Some(text) = decoder.push(id) {
//!         match stops.push(text) { StopCheck::Continue(t) => print!("{t}"),
//!                                  StopCheck::Stop(t) => { print!("{t}"); break; } }
//!     }
//! }
//! ```
//!
//! The stages run in llama.cpp's default order: repetition penalties (over the last
//! `penalty_last_n` ids of the history) -> top-k -> top-p -> min-p -> temperature -> a draw
//! from the softmax with the seeded generator. A temperature of 0 (or below) is greedy: the
//! highest logit after the penalties, the lowest id among equal maxima ("first max wins").
//!
//! The draws are deterministic for a given seed (our generator is xoshiro256**, so they are not
//! the same draws llama.cpp makes with its own generator). Buffers are allocated once; sampling a
//! token allocates nothing.

mod rng;
mod stop;

pub use rng::Rng;
pub use stop::{StopCheck, StopStrings};

use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

/// Sampling parameters. Each stage is off at its neutral value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Logits are divided by this; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; `>= 1` = off.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; `<= 0` = off.
    pub min_p: f32,
    /// Repeated tokens' logits: positive ones divided by it, negative ones multiplied; 1 = off.
    pub repeat_penalty: f32,
    /// Subtracted from a repeated token's logit once per occurrence; 0 = off.
    pub frequency_penalty: f32,
    /// Subtracted once from a repeated token's logit; 0 = off.
    pub presence_penalty: f32,
    /// How many of the latest history ids the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl SamplerConfig {
    /// Argmax: every stage off, temperature 0.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }

    /// llama.cpp's command-line defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).
    pub fn llama_cpp_defaults(seed: u64) -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed,
            ..Self::greedy()
        }
    }

    fn penalizes(&self) -> bool {
        self.penalty_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::greedy()
    }
}

/// Why no token could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerError {
    /// The logits slice is empty.
    NoLogits,
    /// Every logit is NaN or negative infinity.
    NoFiniteLogit,
}

impl fmt::Display for SamplerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLogits => write!(f, "no logits to sample from"),
            Self::NoFiniteLogit => write!(f, "every logit is NaN or -inf"),
        }
    }
}

impl core::error::Error for SamplerError {}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Most likely first; equal logits by ascending id, so every ordering is deterministic.
fn by_likelihood(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// A seeded sampler with reusable buffers.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    candidates: Vec<Candidate>,
    probabilities: Vec<f32>,
    recent: Vec<u32>,
    /// Whether `candidates` is in `by_likelihood` order.
    sorted: bool,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        Self {
            config,
            rng: Rng::new(config.seed),
            candidates: Vec::new(),
            probabilities: Vec::new(),
            recent: Vec::new(),
            sorted: false,
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Restarts the random sequence from the configured seed.
    pub fn reset(&mut self) {
        self.rng = Rng::new(self.config.seed);
    }

    /// Picks the next token. `logits` (one per vocabulary entry) are modified in place by the
    /// repetition penalties; `history` is the sequence so far (ids outside `logits` are ignored).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32, SamplerError> {
        if logits.is_empty() {
            return Err(SamplerError::NoLogits);
        }
        if self.config.penalizes() {
            self.apply_penalties(logits, history);
        }
        if self.config.temperature <= 0.0 {
            return argmax(logits);
        }

        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().filter_map(|(id, &logit)| {
                // NaN and -inf can never be drawn.
                (logit > f32::NEG_INFINITY).then_some(Candidate {
                    id: id as u32,
                    logit,
                })
            }));
        if self.candidates.is_empty() {
            return Err(SamplerError::NoFiniteLogit);
        }
        self.sorted = false;
        self.top_k();
        self.top_p();
        self.min_p();
        let inverse_temperature = 1.0 / self.config.temperature;
        for candidate in &mut self.candidates {
            candidate.logit *= inverse_temperature;
        }
        Ok(self.draw())
    }

    fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        let window = &history[history.len().saturating_sub(self.config.penalty_last_n)..];
        self.recent.clear();
        self.recent.extend_from_slice(window);
        self.recent.sort_unstable();
        for run in self.recent.chunk_by(|a, b| a == b) {
            let Some(logit) = logits.get_mut(run[0] as usize) else {
                continue;
            };
            if *logit <= 0.0 {
                *logit *= self.config.repeat_penalty;
            } else {
                *logit /= self.config.repeat_penalty;
            }
            *logit -=
                run.len() as f32 * self.config.frequency_penalty + self.config.presence_penalty;
        }
    }

    /// With top-k: keeps the k most likely candidates, sorted most likely first.
    fn top_k(&mut self) {
        let k = self.config.top_k;
        if k == 0 {
            return;
        }
        if k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, by_likelihood);
            self.candidates.truncate(k);
        }
        self.candidates.sort_unstable_by(by_likelihood);
        self.sorted = true;
    }

    fn top_p(&mut self) {
        let p = self.config.top_p;
        if p >= 1.0 {
            return;
        }
        // Probabilities are relative to every candidate still in, as in llama.cpp.
        let max = max_logit(&self.candidates);
        let total: f32 = self
            .candidates
            .iter()
            .map(|c| libm::expf(c.logit - max))
            .sum();
        if !self.sorted {
            // Sorting the whole vocabulary is the slow part. Candidates within TAIL of the best
            // logit almost always hold more than `p` of the mass; then the cut falls among them
            // and only they need sorting. Otherwise sort everything.
            const TAIL: f32 = 20.0;
            let near: f32 = self
                .candidates
                .iter()
                .filter(|c| c.logit >= max - TAIL)
                .map(|c| libm::expf(c.logit - max))
                .sum();
            if near / total >= p {
                self.candidates.retain(|c| c.logit >= max - TAIL);
            }
            self.candidates.sort_unstable_by(by_likelihood);
            self.sorted = true;
        }
        let mut cumulative = 0.0f32;
        let mut keep = self.candidates.len();
        for (i, candidate) in self.candidates.iter().enumerate() {
            cumulative += libm::expf(candidate.logit - max) / total;
            if cumulative >= p {
                keep = i + 1;
                break;
            }
        }
        self.candidates.truncate(keep);
    }

    fn min_p(&mut self) {
        let p = self.config.min_p;
        if p <= 0.0 {
            return;
        }
        // p_i >= p * p_max  <=>  logit_i >= logit_max + ln(p); the best candidate always stays.
        let threshold = max_logit(&self.candidates) + libm::logf(p);
        if self.sorted {
            let keep = self
                .candidates
                .iter()
                .take_while(|c| c.logit >= threshold)
                .count();
            self.candidates.truncate(keep.max(1));
        } else {
            self.candidates.retain(|c| c.logit >= threshold);
        }
    }

    /// Draws from the softmax of the (non-empty) candidates, in their current order.
    fn draw(&mut self) -> u32 {
        softmax(&self.candidates, &mut self.probabilities);
        let target = self.rng.next_f64() as f32;
        let mut cumulative = 0.0f32;
        for (candidate, &probability) in self.candidates.iter().zip(&self.probabilities) {
            cumulative += probability;
            if target < cumulative {
                return candidate.id;
            }
        }
        // Rounding left the cumulative sum just under `target`: the last candidate.
        self.candidates[self.candidates.len() - 1].id
    }
}

fn max_logit(candidates: &[Candidate]) -> f32 {
    candidates
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Index of the largest logit, the lowest index on ties; NaN never wins.
///
/// Two passes the compiler vectorizes: the largest value (lane-wise maxima over 16 lanes; a
/// NaN never replaces a lane's value), then the first index holding it. The greedy choice of
/// every slot runs this over the whole vocabulary each step.
pub fn argmax(logits: &[f32]) -> Result<u32, SamplerError> {
    if logits.is_empty() {
        return Err(SamplerError::NoLogits);
    }
    let mut lanes = [f32::NEG_INFINITY; ARGMAX_LANES];
    let mut chunks = logits.chunks_exact(ARGMAX_LANES);
    for chunk in &mut chunks {
        for (lane, &logit) in lanes.iter_mut().zip(chunk) {
            *lane = if logit > *lane { logit } else { *lane };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &value in lanes.iter().chain(chunks.remainder()) {
        best = if value > best { value } else { best };
    }
    // `best` is -inf when every logit is NaN or -inf: the first -inf then wins (as the first
    // non-NaN logit would in a plain scan), and all-NaN finds nothing.
    logits
        .iter()
        .position(|&logit| logit == best)
        .map(|i| i as u32)
        .ok_or(SamplerError::NoFiniteLogit)
}

/// Lanes of [`argmax`]'s first pass (one AVX-512 register of f32).
const ARGMAX_LANES: usize = 16;

/// Softmax of the candidates' logits into `probabilities`.
fn softmax(candidates: &[Candidate], probabilities: &mut Vec<f32>) {
    probabilities.clear();
    let max = max_logit(candidates);
    let mut sum = 0.0f32;
    for candidate in candidates {
        let e = libm::expf(candidate.logit - max);
        probabilities.push(e);
        sum += e;
    }
    for probability in probabilities.iter_mut() {
        *probability /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn config() -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            ..SamplerConfig::greedy()
        }
    }

    /// Token ids drawn `n` times from `logits`, counted per id.
    fn histogram(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut sampler = Sampler::new(cfg);
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            let mut l = logits.to_vec();
            counts[sampler.sample(&mut l, &[]).expect("a token") as usize] += 1;
        }
        counts
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut sampler = Sampler::new(SamplerConfig::greedy());
        assert_eq!(sampler.sample(&mut [0.5, 2.0, -1.0, 2.0], &[]), Ok(1));
        assert_eq!(sampler.sample(&mut [f32::NAN, 1.0, 3.0], &[]), Ok(2));
        assert_eq!(sampler.sample(&mut [], &[]), Err(SamplerError::NoLogits));
        assert_eq!(
            sampler.sample(&mut [f32::NAN], &[]),
            Err(SamplerError::NoFiniteLogit)
        );
    }

    /// The plain first-maximum scan `argmax` must agree with.
    fn argmax_by_scan(logits: &[f32]) -> Option<u32> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &logit) in logits.iter().enumerate() {
            if !logit.is_nan() && best.is_none_or(|(_, b)| logit > b) {
                best = Some((i, logit));
            }
        }
        best.map(|(i, _)| i as u32)
    }

    #[test]
    fn argmax_equals_the_first_maximum_scan() {
        let specials = [
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            0.0,
            -0.0,
            1.5,
            -3.0,
            f32::MAX,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [1usize, 2, 15, 16, 17, 31, 33, 100, 1000] {
            for round in 0..200 {
                let logits: Vec<f32> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        if round % 3 == 0 {
                            specials[(state % specials.len() as u64) as usize]
                        } else {
                            // Few distinct values, so ties are common.
                            (state % 7) as f32 - 3.0
                        }
                    })
                    .collect();
                let expected = argmax_by_scan(&logits).ok_or(SamplerError::NoFiniteLogit);
                assert_eq!(argmax(&logits), expected, "{logits:?}");
            }
        }
        assert_eq!(argmax(&[f32::NAN; 40]), Err(SamplerError::NoFiniteLogit));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 40]), Ok(0));
        let mut tail = [f32::NAN; 35];
        tail[34] = -1.0;
        assert_eq!(argmax(&tail), Ok(34));
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig {
            seed: 1234,
            ..config()
        };
        let run = |cfg| {
            let mut sampler = Sampler::new(cfg);
            (0..100)
                .map(|_| sampler.sample(&mut logits.clone(), &[]).expect("a token"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(cfg), run(cfg));
        assert_ne!(run(cfg), run(SamplerConfig { seed: 99, ..cfg }));
        let mut sampler = Sampler::new(cfg);
        let first = sampler.sample(&mut logits.clone(), &[]);
        sampler.reset();
        assert_eq!(sampler.sample(&mut logits.clone(), &[]), first);
    }

    #[test]
    fn draws_follow_the_softmax() {
        // ln(1), ln(3): probabilities 1/4 and 3/4.
        let counts = histogram(config(), &[0.0, libm::logf(3.0)], 20_000);
        let share = counts[1] as f32 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn top_k_keeps_the_k_best() {
        let counts = histogram(
            SamplerConfig {
                top_k: 2,
                ..config()
            },
            &[1.0, 3.0, 2.9, 0.0],
            2000,
        );
        assert_eq!(counts[0], 0);
        assert_eq!(counts[3], 0);
        assert!(counts[1] > 0 && counts[2] > 0, "{counts:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_set() {
        // Probabilities 0.5, 0.3, 0.2 (logits are their logs).
        let logits = [libm::logf(0.2), libm::logf(0.5), libm::logf(0.3)];
        let counts = histogram(
            SamplerConfig {
                top_p: 0.75,
                ..config()
            },
            &logits,
            2000,
        );
        assert_eq!(counts[0], 0, "{counts:?}");
        assert!(counts[1] > 0 && counts[2] > 0);
        let counts = histogram(
            SamplerConfig {
                top_p: 0.4,
                ..config()
            },
            &logits,
            500,
        );
        assert_eq!(counts, vec![0, 500, 0]);
    }

    #[test]
    fn top_p_shortcut_keeps_the_same_set() {
        // A wide vocabulary with a long tail far below the best logits: top-p alone (which
        // sorts only the candidates near the top) must pick exactly as top-p after a full sort
        // (top-k as large as the vocabulary).
        let logits: Vec<f32> = (0..5000)
            .map(|i| {
                if i % 97 == 0 {
                    (i % 7) as f32
                } else {
                    -30.0 - (i % 13) as f32
                }
            })
            .collect();
        let draw = |top_k| {
            let cfg = SamplerConfig {
                top_p: 0.8,
                top_k,
                seed: 5,
                ..config()
            };
            let mut sampler = Sampler::new(cfg);
            (0..200)
                .map(|_| sampler.sample(&mut logits.clone(), &[]).expect("a token"))
                .collect::<Vec<_>>()
        };
        let shortcut = draw(0);
        assert_eq!(shortcut, draw(logits.len()));
        assert!(
            shortcut.iter().all(|&id| id % 97 == 0 && id % 7 >= 5),
            "{shortcut:?}"
        );
    }

    #[test]
    fn min_p_drops_the_unlikely() {
        // Relative to the best: 1, 0.5, 0.05.
        let logits = [0.0, libm::logf(0.5), libm::logf(0.05)];
        let counts = histogram(
            SamplerConfig {
                min_p: 0.1,
                ..config()
            },
            &logits,
            2000,
        );
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > 0 && counts[1] > 0);
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [1.0, 1.5];
        let cold = histogram(
            SamplerConfig {
                temperature: 0.05,
                ..config()
            },
            &logits,
            1000,
        );
        assert!(cold[1] > 990, "{cold:?}");
        let warm = histogram(config(), &logits, 1000);
        assert!(warm[0] > 200, "{warm:?}");
    }

    #[test]
    fn repetition_penalty_like_llama_cpp() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            frequency_penalty: 0.25,
            presence_penalty: 0.5,
            penalty_last_n: 4,
            ..SamplerConfig::greedy()
        };
        let mut sampler = Sampler::new(cfg);
        let mut logits = [4.0, -1.0, 3.0, 2.0];
        // Only the last 4 ids count: 0 is outside the window; 2 twice, 1 once; 99 is ignored.
        let chosen = sampler
            .sample(&mut logits, &[0, 2, 1, 2, 99])
            .expect("a token");
        assert_eq!(logits, [4.0, -2.0 - 0.25 - 0.5, 3.0 / 2.0 - 0.5 - 0.5, 2.0]);
        assert_eq!(chosen, 0);
        // Greedy picks the best token after the penalty.
        let mut logits = [1.0, 1.2];
        assert_eq!(sampler.sample(&mut logits, &[1]), Ok(0));
    }

    #[test]
    fn no_allocation_once_warm() {
        let mut sampler = Sampler::new(SamplerConfig {
            top_k: 5,
            top_p: 0.9,
            ..config()
        });
        let logits: Vec<f32> = (0..1000).map(|i| (i % 17) as f32).collect();
        sampler
            .sample(&mut logits.clone(), &[1, 2, 3])
            .expect("a token");
        let capacities = (
            sampler.candidates.capacity(),
            sampler.probabilities.capacity(),
        );
        for _ in 0..10 {
            sampler
                .sample(&mut logits.clone(), &[1, 2, 3])
                .expect("a token");
        }
        assert_eq!(
            capacities,
            (
                sampler.candidates.capacity(),
                sampler.probabilities.capacity()
            )
        );
    }
}
