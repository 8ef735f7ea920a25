//! `ward build`: compile the kernel and the loader for the hard-float target, check the kernel
//! for vector code, pack both into one firmware image and print its path, size and SHA-384.

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_tools::image::build::{self, BuildOptions, KernelSource, Target};
use ward_tools::image::vector_check;

#[derive(clap::Args)]
pub struct Args {
    /// Release profile (the default and only profile; accepted for clarity).
    #[arg(long)]
    release: bool,
    /// Output directory (default: target/ward in the workspace).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Pack this kernel ELF instead of building ward-kernel.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// Demonstrate the vector check on a deliberately soft-float build: compile ward-kernel for
    /// the stock x86_64-unknown-none target and run the check on it. Exits non-zero when the
    /// check rejects it, which is the expected outcome.
    #[arg(long, conflicts_with = "kernel")]
    soft_float_check_demo: bool,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let workspace = build::find_workspace(&std::env::current_dir()?)?;
    if args.soft_float_check_demo {
        return soft_float_demo(&workspace);
    }
    let mut options = BuildOptions::new(workspace);
    if let Some(out) = args.out {
        options.out_dir = out;
    }
    if let Some(kernel) = args.kernel {
        options.kernel = KernelSource::Prebuilt(kernel);
    }
    let built = build::build_image(&options)?;
    println!(
        "kernel: {} ({})",
        built.kernel_path.display(),
        built.vectors
    );
    println!("image:  {}", built.image_path.display());
    println!("size:   {} bytes", built.size);
    println!("sha384: {}", hex::encode(built.sha384));
    Ok(ExitCode::SUCCESS)
}

fn soft_float_demo(workspace: &std::path::Path) -> Result<ExitCode, CommandError> {
    let elf_path = build::build_kernel(workspace, Target::SoftFloat)?;
    let elf = std::fs::read(&elf_path)?;
    println!(
        "soft-float kernel: {} ({} bytes)",
        elf_path.display(),
        elf.len()
    );
    match vector_check::check(&elf) {
        Ok(count) => {
            println!("vector check PASSED on the soft-float build ({count}): it did not catch it");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
