//! Runs llama.cpp's `llama-bench` and `llama-batched-bench` on the model Ward measured, with
//! the same lengths, repetitions, thread counts and slot counts, and reads their figures from
//! their machine-readable output (`-o json`, `--output-format jsonl`).

use std::path::{Path, PathBuf};
use std::process::Command;
use ward_inference::bench::{Settings, Stats, ThreadFigures};

/// What llama.cpp is asked to measure.
pub struct Plan<'a> {
    pub model: &'a Path,
    pub settings: Settings,
    pub threads: &'a [usize],
    pub slots: &'a [usize],
    pub threads_for_slots: usize,
}

/// llama.cpp's figures for a [`Plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaFigures {
    /// The commit `llama-bench` reports it was built from.
    pub build_commit: String,
    /// Prompt and decode tokens/s (mean and sd over its repetitions) per thread count.
    pub threads: Vec<ThreadFigures>,
    /// Aggregate decode tokens/s per number of parallel sequences (one run each).
    pub slots: Vec<SlotRate>,
    pub threads_for_slots: usize,
}

/// `llama-batched-bench`'s aggregate decode speed with `slots` parallel sequences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotRate {
    pub slots: usize,
    pub decode_tps: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("llama.cpp's {what} is not at {path} (scripts/build-llama-cpp.sh builds it)")]
    Missing { what: &'static str, path: PathBuf },
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); its stderr ends with:\n{stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading the output of `{command}`: {error}")]
    Output { command: String, error: ParseError },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("not the JSON llama-bench writes: {0}")]
    Json(String),
    #[error("result {index} has no usable {field:?}")]
    Field { index: usize, field: &'static str },
    #[error("no result for {0}")]
    MissingResult(String),
}

/// One test result of `llama-bench -o json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub build_commit: String,
    pub threads: usize,
    pub prompt: usize,
    pub generate: usize,
    pub rate: Stats,
}

/// One result line of `llama-batched-bench`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchedRow {
    pub prompt: usize,
    pub generate: usize,
    pub sequences: usize,
    /// Aggregate decode tokens/s over all sequences (`speed_tg`, `S_TG t/s`).
    pub decode_tps: f64,
}

/// The two llama.cpp programs.
pub struct Binaries {
    bench: PathBuf,
    batched: PathBuf,
}

impl Binaries {
    /// `llama-bench` at `bench`, `llama-batched-bench` in the same folder.
    pub fn beside(bench: &Path) -> Result<Self, LlamaError> {
        let batched = bench.with_file_name("llama-batched-bench");
        for (what, path) in [("llama-bench", bench), ("llama-batched-bench", &batched)] {
            if !path.is_file() {
                return Err(LlamaError::Missing {
                    what,
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(Self {
            bench: bench.to_path_buf(),
            batched,
        })
    }

    /// Runs both programs (the batched one only when slot counts are asked for).
    pub fn run(&self, plan: &Plan<'_>) -> Result<LlamaFigures, LlamaError> {
        let s = plan.settings;
        let bench_args = vec![
            "-m".to_string(),
            plan.model.display().to_string(),
            "-p".into(),
            s.prompt.to_string(),
            "-n".into(),
            s.generate.to_string(),
            "-t".into(),
            join(plan.threads),
            "-r".into(),
            s.repetitions.to_string(),
            "-o".into(),
            "json".into(),
        ];
        let (command, stdout) = run_captured(&self.bench, &bench_args)?;
        let rows = parse_llama_bench(&stdout).map_err(|error| LlamaError::Output {
            command: command.clone(),
            error,
        })?;
        let (build_commit, threads) =
            thread_figures(&rows, plan).map_err(|error| LlamaError::Output { command, error })?;

        let mut slots = Vec::new();
        if !plan.slots.is_empty() {
            // The reference context of 4096 positions, or more when the sequences need it
            // (llama-batched-bench silently skips a count that does not fit).
            let most = plan.slots.iter().copied().max().unwrap_or(1);
            let context = 4096.max(most * (s.prompt + s.generate));
            let batched_args = vec![
                "-m".to_string(),
                plan.model.display().to_string(),
                "-c".into(),
                context.to_string(),
                "-b".into(),
                "2048".into(),
                "-ub".into(),
                "512".into(),
                "-npp".into(),
                s.prompt.to_string(),
                "-ntg".into(),
                s.generate.to_string(),
                "-npl".into(),
                join(plan.slots),
                "-t".into(),
                plan.threads_for_slots.to_string(),
                "--output-format".into(),
                "jsonl".into(),
            ];
            let (command, stdout) = run_captured(&self.batched, &batched_args)?;
            let rows = parse_batched_bench(&stdout);
            slots =
                slot_rates(&rows, plan).map_err(|error| LlamaError::Output { command, error })?;
        }
        Ok(LlamaFigures {
            build_commit,
            threads,
            slots,
            threads_for_slots: plan.threads_for_slots,
        })
    }
}

fn join(counts: &[usize]) -> String {
    counts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Lines of a program's stderr kept in an error: its last words say why it failed.
const STDERR_TAIL_LINES: usize = 20;

/// Runs `program args`, returning the command line (for messages) and its stdout.
fn run_captured(program: &Path, args: &[String]) -> Result<(String, String), LlamaError> {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LlamaError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        return Err(LlamaError::Failed {
            command,
            status: output.status,
            stderr: tail,
        });
    }
    Ok((
        command,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// The results of `llama-bench -o json`: a JSON array with one object per test.
pub fn parse_llama_bench(text: &str) -> Result<Vec<BenchRow>, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    let tests = value
        .as_array()
        .ok_or_else(|| ParseError::Json("the top level is not an array".into()))?;
    tests
        .iter()
        .enumerate()
        .map(|(index, test)| {
            let count = |field: &'static str| {
                test.get(field)
                    .and_then(serde_json::Value::as_u64)
                    .map(|n| n as usize)
                    .ok_or(ParseError::Field { index, field })
            };
            let rate = |field: &'static str| {
                test.get(field)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or(ParseError::Field { index, field })
            };
            Ok(BenchRow {
                build_commit: test
                    .get("build_commit")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                threads: count("n_threads")?,
                prompt: count("n_prompt")?,
                generate: count("n_gen")?,
                rate: Stats {
                    mean: rate("avg_ts")?,
                    sd: rate("stddev_ts")?,
                },
            })
        })
        .collect()
}

/// The result rows of `llama-batched-bench`: its JSON lines (`--output-format jsonl`), or the
/// rows of its Markdown table when it was run without that option. Its other lines (logs,
/// the table header, timings) are skipped.
pub fn parse_batched_bench(text: &str) -> Vec<BatchedRow> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('{') {
                batched_json_row(line)
            } else if line.starts_with('|') {
                batched_table_row(line)
            } else {
                None
            }
        })
        .collect()
}

fn batched_json_row(line: &str) -> Option<BatchedRow> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let count = |field: &str| value.get(field)?.as_u64().map(|n| n as usize);
    Some(BatchedRow {
        prompt: count("pp")?,
        generate: count("tg")?,
        sequences: count("pl")?,
        decode_tps: value.get("speed_tg")?.as_f64()?,
    })
}

/// `|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |`
fn batched_table_row(line: &str) -> Option<BatchedRow> {
    let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
    if cells.len() != 10 {
        return None;
    }
    Some(BatchedRow {
        prompt: cells[0].parse().ok()?,
        generate: cells[1].parse().ok()?,
        sequences: cells[2].parse().ok()?,
        decode_tps: cells[7].parse().ok()?,
    })
}

/// The prompt and decode figures at each of the plan's thread counts.
fn thread_figures(
    rows: &[BenchRow],
    plan: &Plan<'_>,
) -> Result<(String, Vec<ThreadFigures>), ParseError> {
    let s = plan.settings;
    let find = |threads: usize, prompt: usize, generate: usize| {
        rows.iter()
            .find(|r| r.threads == threads && r.prompt == prompt && r.generate == generate)
            .map(|r| r.rate)
            .ok_or_else(|| {
                let test = if generate == 0 {
                    format!("pp{prompt}")
                } else {
                    format!("tg{generate}")
                };
                ParseError::MissingResult(format!("{test} at {threads} threads"))
            })
    };
    let figures = plan
        .threads
        .iter()
        .map(|&threads| {
            Ok(ThreadFigures {
                threads,
                prompt: find(threads, s.prompt, 0)?,
                decode: find(threads, 0, s.generate)?,
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let commit = rows
        .first()
        .map_or_else(|| "unknown".to_string(), |r| r.build_commit.clone());
    Ok((commit, figures))
}

/// The aggregate decode speed at each of the plan's slot counts.
fn slot_rates(rows: &[BatchedRow], plan: &Plan<'_>) -> Result<Vec<SlotRate>, ParseError> {
    let s = plan.settings;
    plan.slots
        .iter()
        .map(|&slots| {
            rows.iter()
                .find(|r| r.sequences == slots && r.prompt == s.prompt && r.generate == s.generate)
                .map(|r| SlotRate {
                    slots,
                    decode_tps: r.decode_tps,
                })
                .ok_or_else(|| {
                    ParseError::MissingResult(format!(
                        "{slots} parallel sequences of pp{} tg{}",
                        s.prompt, s.generate
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real outputs of the build from scripts/build-llama-cpp.sh (llama.cpp 0c1e57098) on the
    // default model, run on a busy machine (hence the low figures):
    // `llama-bench -p 32 -n 8 -t 1,2 -r 2 -o json` and
    // `llama-batched-bench -c 4096 -b 2048 -ub 512 -npp 32 -ntg 8 -npl 1,2 -t 2`, with and
    // without `--output-format jsonl`.
    const BENCH_JSON: &str = include_str!("../../../tests/data/llama-bench-0c1e57098.json");
    const BATCHED_JSONL: &str =
        include_str!("../../../tests/data/llama-batched-bench-0c1e57098.jsonl");
    const BATCHED_TABLE: &str =
        include_str!("../../../tests/data/llama-batched-bench-0c1e57098.md");

    fn plan<'a>(threads: &'a [usize], slots: &'a [usize]) -> Plan<'a> {
        Plan {
            model: Path::new("m.gguf"),
            settings: Settings {
                prompt: 32,
                generate: 8,
                repetitions: 2,
            },
            threads,
            slots,
            threads_for_slots: 2,
        }
    }

    #[test]
    fn llama_bench_json_gives_prompt_and_decode_per_thread_count() {
        let rows = parse_llama_bench(BENCH_JSON).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].build_commit, "0c1e57098");
        let (commit, figures) = thread_figures(&rows, &plan(&[2, 1], &[])).unwrap();
        assert_eq!(commit, "0c1e57098");
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].threads, 2);
        assert_eq!(figures[0].prompt.mean, 13.439274);
        assert_eq!(figures[0].prompt.sd, 3.390872);
        assert_eq!(figures[0].decode.mean, 2.896227);
        assert_eq!(figures[1].threads, 1);
        assert_eq!(figures[1].prompt.mean, 92.019678);
        assert_eq!(figures[1].decode.mean, 28.958018);
        assert_eq!(figures[1].decode.sd, 1.108872);
    }

    #[test]
    fn a_thread_count_llama_bench_did_not_run_is_named() {
        let rows = parse_llama_bench(BENCH_JSON).unwrap();
        assert_eq!(
            thread_figures(&rows, &plan(&[1, 4], &[])),
            Err(ParseError::MissingResult("pp32 at 4 threads".into()))
        );
    }

    #[test]
    fn malformed_llama_bench_output_is_an_error() {
        assert!(matches!(
            parse_llama_bench("main: error: failed to load model"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_llama_bench("{\"n_threads\": 1}"),
            Err(ParseError::Json(_))
        ));
        let without_rate = "[{\"n_threads\": 1, \"n_prompt\": 32, \"n_gen\": 0, \"stddev_ts\": 1}]";
        assert_eq!(
            parse_llama_bench(without_rate),
            Err(ParseError::Field {
                index: 0,
                field: "avg_ts"
            })
        );
    }

    #[test]
    fn batched_bench_jsonl_and_table_give_the_same_rows() {
        let from_json = parse_batched_bench(BATCHED_JSONL);
        assert_eq!(
            from_json,
            [
                BatchedRow {
                    prompt: 32,
                    generate: 8,
                    sequences: 1,
                    decode_tps: 3.025660
                },
                BatchedRow {
                    prompt: 32,
                    generate: 8,
                    sequences: 2,
                    decode_tps: 6.331380
                },
            ]
        );
        // The table sample is a second run: same rows, its own speeds.
        let from_table = parse_batched_bench(BATCHED_TABLE);
        assert_eq!(from_table.len(), 2);
        assert_eq!(from_table[0].sequences, 1);
        assert_eq!(from_table[0].decode_tps, 2.31);
        assert_eq!(from_table[1].sequences, 2);
        assert_eq!(from_table[1].decode_tps, 5.10);
        assert!(from_table.iter().all(|r| r.prompt == 32 && r.generate == 8));
    }

    #[test]
    fn slot_rates_follow_the_plan_and_name_a_missing_count() {
        let rows = parse_batched_bench(BATCHED_JSONL);
        let rates = slot_rates(&rows, &plan(&[2], &[2, 1])).unwrap();
        assert_eq!(
            rates,
            [
                SlotRate {
                    slots: 2,
                    decode_tps: 6.331380
                },
                SlotRate {
                    slots: 1,
                    decode_tps: 3.025660
                }
            ]
        );
        assert_eq!(
            slot_rates(&rows, &plan(&[2], &[1, 8])),
            Err(ParseError::MissingResult(
                "8 parallel sequences of pp32 tg8".into()
            ))
        );
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = std::env::temp_dir().join(format!("ward-llama-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bench = dir.join("llama-bench");
        let Err(LlamaError::Missing { what, path }) = Binaries::beside(&bench) else {
            panic!("a missing llama-bench was accepted");
        };
        assert_eq!((what, path), ("llama-bench", bench.clone()));
        std::fs::write(&bench, b"").unwrap();
        let Err(LlamaError::Missing { what, path }) = Binaries::beside(&bench) else {
            panic!("a missing llama-batched-bench was accepted");
        };
        assert_eq!(
            (what, path),
            ("llama-batched-bench", dir.join("llama-batched-bench"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_program_is_reported_with_its_command_and_stderr() {
        let args = ["-c".to_string(), "echo 'bad model' >&2; exit 3".to_string()];
        let Err(error) = run_captured(Path::new("/bin/sh"), &args) else {
            panic!("a failing command was accepted");
        };
        let message = error.to_string();
        assert!(
            message.contains("`/bin/sh -c echo 'bad model' >&2; exit 3` failed"),
            "{message}"
        );
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.ends_with("\nbad model"), "{message}");
        let Err(LlamaError::Spawn { command, .. }) =
            run_captured(Path::new("/nonexistent/llama-bench"), &[])
        else {
            panic!("a missing program was accepted");
        };
        assert_eq!(command, "/nonexistent/llama-bench");
    }
}
