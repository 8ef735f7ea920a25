//! `ward`: the host-side tool for building, running, sealing, measuring, verifying and talking to
//! Ward enclaves. Each subcommand lives in its own module under `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: ward_tools::hugepages::HugePageAllocator =
    ward_tools::hugepages::HugePageAllocator;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "Confidential LLM inference node: host tool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the kernel and pack it with the loader into one firmware image.
    Build(cmd::build::Args),
    /// Boot a Ward image under QEMU.
    Run(cmd::run::Args),
    /// Tokenize text with a GGUF model's tokenizer; prints a JSON array of token ids.
    Tokenize(cmd::tokenize::Args),
    /// Generate text on the host with the same engine the enclave runs.
    Generate(cmd::generate::Args),
    /// Measure the engine's speed (and llama.cpp's, when given).
    Bench(cmd::bench::Args),
    /// Seal a GGUF model into an encrypted disk image.
    Seal(cmd::seal::Args),
    /// Compute expected launch measurements (SNP, TDX) and configuration digests.
    Measure(cmd::measure::Args),
    /// Verify SEV-SNP reports and TDX quotes.
    Verify(cmd::verify::Args),
    /// Ask an enclave a question over an attested, encrypted session; streams the answer.
    Chat(cmd::chat::Args),
    /// Release a sealed model's key to an attested enclave (model owner).
    ReleaseKey(cmd::release_key::Args),
    /// Generate the key-release server's X25519 key pair.
    Keygen(cmd::keygen::Args),
    /// The whole job on this machine: seal the default model, boot the enclave, release the key,
    /// ask one question, print the answer and timings.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Tokenize(args) => cmd::tokenize::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Seal(args) => cmd::seal::run(args),
        Command::Measure(args) => cmd::measure::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::ReleaseKey(args) => cmd::release_key::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Demo(args) => cmd::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ward: {error}");
            ExitCode::FAILURE
        }
    }
}
