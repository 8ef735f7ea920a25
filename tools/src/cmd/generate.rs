//! `ward generate`: runs the inference engine on the host, exactly as the enclave does, and prints
//! one JSON object `{"prompt_tokens":[...],"tokens":[...],"text":"..."}` (a contract: tests and
//! benchmarks outside the project parse it).
//!
//! `--prompt TEXT` tokenizes TEXT as is (special tokens recognized); `--chat MESSAGE` renders the
//! model's chat template around a user message with the generation prompt. Generation stops after
//! `--max-tokens` tokens or at an end-of-generation token (which is listed in `tokens` but not
//! rendered in `text`), unless `--ignore-eos`. Temperature 0 is greedy decoding.

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_inference::chat::{ChatMessage, ChatTemplate};
use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::sampler::{Sampler, SamplerConfig};
use ward_inference::tokenizer::Tokenizer;

/// Tokens processed per forward step while reading the prompt (llama.cpp's default micro-batch).
const PROMPT_BATCH: usize = 512;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "chat"])))]
pub struct Args {
    /// GGUF model to run.
    #[arg(long)]
    model: PathBuf,
    /// Raw prompt text (special tokens such as <|im_start|> are recognized).
    #[arg(long)]
    prompt: Option<String>,
    /// A user message, wrapped in the model's chat template with the generation prompt.
    #[arg(long)]
    chat: Option<String>,
    /// Most tokens to generate.
    #[arg(long)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed of the sampler's random generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Kernel implementation (default: the best this CPU supports).
    #[arg(long, value_parser = parse_simd)]
    simd: Option<SimdLevel>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print the JSON object (the only output format; accepted for clarity in scripts).
    #[arg(long)]
    json: bool,
}

pub fn parse_simd(name: &str) -> Result<SimdLevel, String> {
    SimdLevel::from_name(name)
        .ok_or_else(|| format!("unknown level {name:?} (scalar, avx2, avx512)"))
}

/// The kernels for `--simd`, or the best available.
pub fn kernels_for(level: Option<SimdLevel>) -> Result<Kernels, CommandError> {
    match level {
        None => Ok(Kernels::detect()),
        Some(level) => Ok(Kernels::with_level(level)?),
    }
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let bytes =
        std::fs::read(&args.model).map_err(|e| format!("reading {}: {e}", args.model.display()))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let model = Model::from_gguf(&gguf, kernels_for(args.simd)?)?;

    let text = match (&args.prompt, &args.chat) {
        (Some(prompt), _) => prompt.clone(),
        (None, Some(message)) => {
            ChatTemplate::from_gguf(&gguf)?.render(&[ChatMessage::user(message)], true)?
        }
        (None, None) => return Err("give --prompt or --chat".into()),
    };
    let prompt_tokens = tokenizer.encode(&text, true);
    if prompt_tokens.is_empty() {
        return Err("the prompt is empty".into());
    }
    let capacity =
        (prompt_tokens.len() + args.max_tokens).min(model.config().context_length.max(1));
    if prompt_tokens.len() >= capacity && args.max_tokens > 0 {
        return Err(format!(
            "the prompt ({} tokens) fills the model's context ({capacity})",
            prompt_tokens.len()
        )
        .into());
    }
    let mut ctx = model.new_context(capacity, PROMPT_BATCH);
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplerConfig::greedy()
    });

    let mut history = prompt_tokens.clone();
    let mut tokens = Vec::new();
    let mut decoder = tokenizer.decoder();
    let mut out_text = String::new();
    if args.max_tokens > 0 {
        let mut logits = model.forward(&mut ctx, &prompt_tokens)?.to_vec();
        loop {
            let id = sampler.sample(&mut logits, &history)?;
            tokens.push(id);
            history.push(id);
            let end = tokenizer.is_end_of_generation(id);
            if !end && let Some(piece) = decoder.push(id) {
                out_text.push_str(piece);
            }
            if (end && !args.ignore_eos)
                || tokens.len() == args.max_tokens
                || ctx.position() == capacity
            {
                break;
            }
            logits.copy_from_slice(model.forward(&mut ctx, &[id])?);
        }
    }
    out_text.push_str(decoder.finish());
    let json = serde_json::json!({
        "prompt_tokens": prompt_tokens,
        "tokens": tokens,
        "text": out_text,
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
