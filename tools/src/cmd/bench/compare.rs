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
