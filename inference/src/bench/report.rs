//! The figures of one benchmark run and their two printed forms: the table people read and
//! the JSON object scripts read.

use super::{Settings, Stats};
use crate::model::Model;
use alloc::format;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Prompt and decode speed at one thread count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreadFigures {
    pub threads: usize,
    pub prompt: Stats,
    pub decode: Stats,
}

/// Aggregate decode speed with `slots` busy slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotFigures {
    pub slots: usize,
    pub decode: Stats,
}

/// Everything one run measured, in the order it was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub settings: Settings,
    /// Bytes of packed weights of the model measured.
    pub weights_bytes: usize,
    /// Name of the kernel level the model ran with.
    pub kernels: &'static str,
    pub threads: Vec<ThreadFigures>,
    pub slots: Vec<SlotFigures>,
    /// Threads the batched decode ran on.
    pub threads_for_slots: usize,
}

impl BenchReport {
    /// An empty report for `model`; push the figures as they are measured.
    pub fn new(model: &Model, settings: Settings, threads_for_slots: usize) -> Self {
        Self {
            settings,
            weights_bytes: model.weights().byte_size(),
            kernels: model.kernels().level().name(),
            threads: Vec::new(),
            slots: Vec::new(),
            threads_for_slots,
        }
    }

    /// The figures at `threads`, if that count was measured.
    pub fn at_threads(&self, threads: usize) -> Option<&ThreadFigures> {
        self.threads.iter().find(|t| t.threads == threads)
    }

    /// The aggregate decode figures with `slots` busy slots, if measured.
    pub fn at_slots(&self, slots: usize) -> Option<&SlotFigures> {
        self.slots.iter().find(|s| s.slots == slots)
    }

    /// The human-readable table; `model` names the model in its first line (a path on the
    /// host, a disk label in the enclave).
    pub fn write_table(&self, out: &mut dyn Write, model: &str) -> fmt::Result {
        writeln!(
            out,
            "model {model} ({:.1} MB of packed weights), kernels {}, {} runs",
            self.weights_bytes as f64 / 1e6,
            self.kernels,
            self.settings.repetitions
        )?;
        writeln!(
            out,
            "{:<8} {:<10} {:>12} {:>10}",
            "threads", "test", "tokens/s", "± sd"
        )?;
        for t in &self.threads {
            let tests = [
                (format!("pp{}", self.settings.prompt), t.prompt),
                (format!("tg{}", self.settings.generate), t.decode),
            ];
            for (test, stats) in tests {
                writeln!(
                    out,
                    "{:<8} {:<10} {:>12.1} {:>10.1}",
                    t.threads, test, stats.mean, stats.sd
                )?;
            }
        }
        if !self.slots.is_empty() {
            writeln!(
                out,
                "batched decode on {} threads, aggregate over all slots:",
                self.threads_for_slots
            )?;
            writeln!(out, "{:<8} {:>12} {:>10}", "slots", "tokens/s", "± sd")?;
            for s in &self.slots {
                writeln!(
                    out,
                    "{:<8} {:>12.1} {:>10.1}",
                    s.slots, s.decode.mean, s.decode.sd
                )?;
            }
        }
        Ok(())
    }

    /// The members of the JSON object, without the braces, so a caller can add its own keys:
    /// `"threads":{"1":{"prompt_tps":F,"decode_tps":F}},"slots":{"1":F},"threads_for_slots":N`.
    pub fn write_json_members(&self, out: &mut dyn Write) -> fmt::Result {
        out.write_str("\"threads\":{")?;
        for (i, t) in self.threads.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(out, "\"{}\":{{\"prompt_tps\":", t.threads)?;
            write_json_number(out, t.prompt.mean)?;
            out.write_str(",\"decode_tps\":")?;
            write_json_number(out, t.decode.mean)?;
            out.write_char('}')?;
        }
        out.write_str("},\"slots\":{")?;
        for (i, s) in self.slots.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(out, "\"{}\":", s.slots)?;
            write_json_number(out, s.decode.mean)?;
        }
        write!(out, "}},\"threads_for_slots\":{}", self.threads_for_slots)
    }

    /// The JSON object of the benchmark contract, on one line without a newline.
    pub fn write_json(&self, out: &mut dyn Write) -> fmt::Result {
        out.write_char('{')?;
        self.write_json_members(out)?;
        out.write_char('}')
    }
}

/// A JSON number that always reads back as a float (`80.0`, never `80`, so strict readers see
/// the same type for every figure); `null` for a value JSON cannot hold.
fn write_json_number(out: &mut dyn Write, value: f64) -> fmt::Result {
    if !value.is_finite() {
        return out.write_str("null");
    }
    // `Display` for f64 never uses an exponent and round-trips exactly.
    let text = format!("{value}");
    out.write_str(&text)?;
    if !text.contains('.') {
        out.write_str(".0")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn report() -> BenchReport {
        BenchReport {
            settings: Settings {
                prompt: 128,
                generate: 64,
                repetitions: 3,
            },
            weights_bytes: 96_600_000,
            kernels: "avx512",
            threads: alloc::vec![
                ThreadFigures {
                    threads: 1,
                    prompt: Stats {
                        mean: 200.25,
                        sd: 1.5,
                    },
                    decode: Stats {
                        mean: 96.0,
                        sd: 0.0
                    },
                },
                ThreadFigures {
                    threads: 2,
                    prompt: Stats {
                        mean: 390.0,
                        sd: 2.0,
                    },
                    decode: Stats {
                        mean: 150.5,
                        sd: 0.25,
                    },
                },
            ],
            slots: alloc::vec![
                SlotFigures {
                    slots: 1,
                    decode: Stats {
                        mean: 149.0,
                        sd: 1.0,
                    },
                },
                SlotFigures {
                    slots: 8,
                    decode: Stats {
                        mean: 700.125,
                        sd: 3.0,
                    },
                },
            ],
            threads_for_slots: 2,
        }
    }

    #[test]
    fn json_object_has_the_contract_keys_and_float_values() {
        let mut out = String::new();
        report().write_json(&mut out).unwrap();
        assert_eq!(
            out,
            "{\"threads\":{\"1\":{\"prompt_tps\":200.25,\"decode_tps\":96.0},\
             \"2\":{\"prompt_tps\":390.0,\"decode_tps\":150.5}},\
             \"slots\":{\"1\":149.0,\"8\":700.125},\"threads_for_slots\":2}"
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(value["threads"]["1"]["decode_tps"].is_f64());
        assert_eq!(value["slots"]["8"].as_f64(), Some(700.125));
    }

    #[test]
    fn json_without_slots_and_with_a_non_finite_figure() {
        let mut r = report();
        r.slots.clear();
        r.threads.truncate(1);
        r.threads[0].prompt.mean = f64::INFINITY;
        let mut out = String::new();
        r.write_json(&mut out).unwrap();
        assert_eq!(
            out,
            "{\"threads\":{\"1\":{\"prompt_tps\":null,\"decode_tps\":96.0}},\"slots\":{},\
             \"threads_for_slots\":2}"
        );
    }

    #[test]
    fn table_rows_per_thread_count_and_slot_count() {
        let mut out = String::new();
        report().write_table(&mut out, "m.gguf").unwrap();
        let expected = "\
model m.gguf (96.6 MB of packed weights), kernels avx512, 3 runs
threads  test           tokens/s       ± sd
1        pp128             200.2        1.5
1        tg64               96.0        0.0
2        pp128             390.0        2.0
2        tg64              150.5        0.2
batched decode on 2 threads, aggregate over all slots:
slots        tokens/s       ± sd
1               149.0        1.0
8               700.1        3.0
";
        assert_eq!(out, expected);
    }
}
