//! Mean and spread of per-run figures.

/// Mean and sample standard deviation (`n - 1` in the denominator, 0 for a single sample) of
/// a series of tokens/s figures, as `llama-bench` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub sd: f64,
}

impl Stats {
    /// The statistics of `samples` (all zero when there are none).
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self { mean: 0.0, sd: 0.0 };
        }
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let squares: f64 = samples.iter().map(|s| (s - mean) * (s - mean)).sum();
        let variance = squares / (n - 1.0).max(1.0);
        Self {
            mean,
            sd: libm::sqrt(variance),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn mean_and_sample_deviation() {
        let s = Stats::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        // Sum of squares 32 over n - 1 = 7.
        assert!((s.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn one_sample_has_no_spread_and_none_is_zero() {
        assert_eq!(Stats::of(&[3.5]), Stats { mean: 3.5, sd: 0.0 });
        assert_eq!(Stats::of(&[]), Stats { mean: 0.0, sd: 0.0 });
    }
}
