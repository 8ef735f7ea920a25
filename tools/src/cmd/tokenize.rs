//! `ward tokenize --model M.gguf [--no-special] TEXT`: prints ONE JSON array of token ids, e.g.
//! `[19556,905]`, and nothing else on stdout (a contract: tests and benchmarks parse it).
//!
//! Special tokens written in TEXT (`<|im_start|>`, …) are recognized unless `--no-special`; BOS
//! is prepended only when the model's metadata (`tokenizer.ggml.add_bos_token`) asks for it.

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_inference::gguf::Gguf;
use ward_inference::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model whose tokenizer to use.
    #[arg(long)]
    model: PathBuf,
    /// Treat special-token texts like `<|im_start|>` as plain text.
    #[arg(long)]
    no_special: bool,
    /// The text to tokenize.
    text: String,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let bytes =
        std::fs::read(&args.model).map_err(|e| format!("reading {}: {e}", args.model.display()))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let tokenizer =
        Tokenizer::from_gguf(&gguf).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let ids = tokenizer.encode(&args.text, !args.no_special);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}
