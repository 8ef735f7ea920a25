//! One module per `ward` subcommand. Each exposes `Args` (clap) and
//! `run(Args) -> Result<ExitCode, CommandError>`.

pub mod attested;
pub mod bench;
pub mod build;
pub mod chat;
pub mod demo;
pub mod generate;
pub mod keygen;
pub mod measure;
pub mod release_key;
pub mod run;
pub mod seal;
pub mod tokenize;
pub mod verify;

/// The error every subcommand returns: a message with its context, printed by `main`.
pub type CommandError = Box<dyn std::error::Error + Send + Sync>;
