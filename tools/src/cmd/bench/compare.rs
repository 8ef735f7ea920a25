//! Ward's figures next to llama.cpp's: the ratios table and the `"llama_cpp"` / `"ratios"`
//! keys of the JSON object. A ratio is Ward's tokens/s over llama.cpp's (above 1: Ward is
//! faster); `null` in JSON when llama.cpp's figure is not positive.

use super::llama_cpp::LlamaFigures;
use serde_json::{Map, Value, json};
use std::fmt::{self, Write};
use ward_inference::bench::BenchReport;

pub struct Comparison<'a> {
    ward: &'a BenchReport,
    llama: &'a LlamaFigures,
}

/// Ward's rate over llama.cpp's.
fn ratio(ward: f64, llama: f64) -> Option<f64> {
    (llama > 0.0 && llama.is_finite() && ward.is_finite()).then(|| ward / llama)
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}×"))
}

impl<'a> Comparison<'a> {
    pub fn new(ward: &'a BenchReport, llama: &'a LlamaFigures) -> Self {
        Self { ward, llama }
    }

    /// Rows per thread count and test, then per slot count: llama.cpp's figure, Ward's, and
    /// their ratio.
    pub fn write_table(&self, out: &mut dyn Write) -> fmt::Result {
        let s = self.ward.settings;
        writeln!(
            out,
            "llama.cpp {} (llama-bench, llama-batched-bench), same model and settings:",
            self.llama.build_commit
        )?;
        writeln!(
            out,
            "{:<8} {:<10} {:>12} {:>10} {:>12} {:>10}",
            "threads", "test", "llama.cpp", "± sd", "Ward", "Ward/llama"
        )?;
        for llama in &self.llama.threads {
            let Some(ward) = self.ward.at_threads(llama.threads) else {
                continue;
            };
            let tests = [
                (format!("pp{}", s.prompt), llama.prompt, ward.prompt.mean),
                (format!("tg{}", s.generate), llama.decode, ward.decode.mean),
            ];
            for (test, theirs, ours) in tests {
                writeln!(
                    out,
                    "{:<8} {:<10} {:>12.1} {:>10.1} {:>12.1} {:>10}",
                    llama.threads,
                    test,
                    theirs.mean,
                    theirs.sd,
                    ours,
                    ratio_text(ratio(ours, theirs.mean))
                )?;
            }
        }
        if !self.llama.slots.is_empty() {
            writeln!(
                out,
                "aggregate decode on {} threads (llama.cpp: pp{} tg{} per sequence):",
                self.llama.threads_for_slots, s.prompt, s.generate
            )?;
            writeln!(
                out,
                "{:<8} {:>12} {:>12} {:>10}",
                "slots", "llama.cpp", "Ward", "Ward/llama"
            )?;
            for llama in &self.llama.slots {
                let Some(ward) = self.ward.at_slots(llama.slots) else {
                    continue;
                };
                writeln!(
                    out,
                    "{:<8} {:>12.1} {:>12.1} {:>10}",
                    llama.slots,
                    llama.decode_tps,
                    ward.decode.mean,
                    ratio_text(ratio(ward.decode.mean, llama.decode_tps))
                )?;
            }
        }
        Ok(())
    }

    /// `"llama_cpp": {"build_commit", "threads": {T: {"prompt_tps", "decode_tps", "prompt_sd",
    /// "decode_sd"}}, "slots": {S: F}, "threads_for_slots"}`.
    fn llama_json(&self) -> Value {
        let mut threads = Map::new();
        for t in &self.llama.threads {
            threads.insert(
                t.threads.to_string(),
                json!({
                    "prompt_tps": t.prompt.mean,
                    "prompt_sd": t.prompt.sd,
                    "decode_tps": t.decode.mean,
                    "decode_sd": t.decode.sd,
                }),
            );
        }
        let mut slots = Map::new();
        for s in &self.llama.slots {
            slots.insert(s.slots.to_string(), json!(s.decode_tps));
        }
        json!({
            "build_commit": self.llama.build_commit,
            "threads": threads,
            "slots": slots,
            "threads_for_slots": self.llama.threads_for_slots,
        })
    }

    /// `"ratios": {"threads": {T: {"prompt": F, "decode": F}}, "slots": {S: F}}`.
    fn ratios_json(&self) -> Value {
        let mut threads = Map::new();
        for llama in &self.llama.threads {
            if let Some(ward) = self.ward.at_threads(llama.threads) {
                threads.insert(
                    llama.threads.to_string(),
                    json!({
                        "prompt": ratio(ward.prompt.mean, llama.prompt.mean),
                        "decode": ratio(ward.decode.mean, llama.decode.mean),
                    }),
                );
            }
        }
        let mut slots = Map::new();
        for llama in &self.llama.slots {
            if let Some(ward) = self.ward.at_slots(llama.slots) {
                slots.insert(
                    llama.slots.to_string(),
                    json!(ratio(ward.decode.mean, llama.decode_tps)),
                );
            }
        }
        json!({ "threads": threads, "slots": slots })
    }

    /// The contract's object with the `"llama_cpp"` and `"ratios"` keys added, on one line.
    pub fn write_json(&self, out: &mut dyn Write) -> fmt::Result {
        out.write_char('{')?;
        self.ward.write_json_members(out)?;
        write!(
            out,
            ",\"llama_cpp\":{},\"ratios\":{}}}",
            self.llama_json(),
            self.ratios_json()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::bench::llama_cpp::SlotRate;
    use ward_inference::bench::{Settings, SlotFigures, Stats, ThreadFigures};

    fn stats(mean: f64) -> Stats {
        Stats { mean, sd: 1.0 }
    }

    fn ward() -> BenchReport {
        BenchReport {
            settings: Settings {
                prompt: 128,
                generate: 64,
                repetitions: 5,
            },
            weights_bytes: 1,
            kernels: "avx512",
            threads: vec![ThreadFigures {
                threads: 2,
                prompt: stats(300.0),
                decode: stats(150.0),
            }],
            slots: vec![
                SlotFigures {
                    slots: 1,
                    decode: stats(140.0),
                },
                SlotFigures {
                    slots: 8,
                    decode: stats(600.0),
                },
            ],
            threads_for_slots: 2,
        }
    }

    fn llama() -> LlamaFigures {
        LlamaFigures {
            build_commit: "0c1e57098".into(),
            threads: vec![ThreadFigures {
                threads: 2,
                prompt: stats(250.0),
                decode: stats(100.0),
            }],
            slots: vec![
                SlotRate {
                    slots: 1,
                    decode_tps: 0.0,
                },
                SlotRate {
                    slots: 8,
                    decode_tps: 150.0,
                },
            ],
            threads_for_slots: 2,
        }
    }

    #[test]
    fn json_keeps_the_contract_and_adds_figures_and_ratios() {
        let (ward, llama) = (ward(), llama());
        let mut out = String::new();
        Comparison::new(&ward, &llama).write_json(&mut out).unwrap();
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["threads"]["2"]["decode_tps"], json!(150.0));
        assert_eq!(value["slots"]["8"], json!(600.0));
        assert_eq!(value["threads_for_slots"], json!(2));
        assert_eq!(value["llama_cpp"]["build_commit"], json!("0c1e57098"));
        assert_eq!(
            value["llama_cpp"]["threads"]["2"]["prompt_tps"],
            json!(250.0)
        );
        assert_eq!(value["llama_cpp"]["slots"]["8"], json!(150.0));
        assert_eq!(value["ratios"]["threads"]["2"]["prompt"], json!(1.2));
        assert_eq!(value["ratios"]["threads"]["2"]["decode"], json!(1.5));
        assert_eq!(value["ratios"]["slots"]["8"], json!(4.0));
        // llama.cpp's zero figure gives no ratio rather than infinity.
        assert_eq!(value["ratios"]["slots"]["1"], Value::Null);
    }

    #[test]
    fn table_shows_both_figures_and_the_ratio() {
        let (ward, llama) = (ward(), llama());
        let mut out = String::new();
        Comparison::new(&ward, &llama)
            .write_table(&mut out)
            .unwrap();
        assert!(out.starts_with("llama.cpp 0c1e57098 "), "{out}");
        assert!(
            out.contains("2        pp128             250.0        1.0        300.0      1.20×\n"),
            "{out}"
        );
        assert!(
            out.contains("2        tg64              100.0        1.0        150.0      1.50×\n"),
            "{out}"
        );
        assert!(out.contains("aggregate decode on 2 threads"), "{out}");
        assert!(
            out.contains("8               150.0        600.0      4.00×\n"),
            "{out}"
        );
        assert!(
            out.contains("1                 0.0        140.0          -\n"),
            "{out}"
        );
    }
}
