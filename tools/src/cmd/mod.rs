//! One module per `ward` subcommand. Each exposes `Args` (clap) and
//! `run(Args) -> Result<ExitCode, CommandError>`.

pub mod bench;
pub mod build;
pub mod generate;
pub mod measure;
pub mod run;
pub mod seal;
pub mod tokenize;
pub mod verify;

/// The error every subcommand returns: a message with its context, printed by `main`.
pub type CommandError = Box<dyn std::error::Error + Send + Sync>;
