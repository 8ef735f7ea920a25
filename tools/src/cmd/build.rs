//! `ward build`: compile the kernel and the loader for the hard-float target, check the kernel
//! for vector code, pack both into one firmware image and print its path, size and SHA-384.

use super::CommandError;
use std::path::PathBuf;
use std::process::ExitCode;
use ward_tools::image::build::{self, BuildOptions, KernelSource};
use ward_tools::image::{soft_float_probe, vector_check};

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
    /// Demonstrate the vector check: build a tiny f32 crate for the hard-float Ward target and
    /// for the stock soft-float x86_64-unknown-none, check both (and target/ward/kernel.elf).
    /// Succeeds when the check passes the first and rejects the second.
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
    let outcome = soft_float_probe::run(workspace)?;
    for (label, (path, result)) in [
        (
            "hard-float build (targets/x86_64-ward.json)",
            &outcome.hard_float,
        ),
        (
            "soft-float build (x86_64-unknown-none)",
            &outcome.soft_float,
        ),
    ] {
        println!("{label}: {}", path.display());
        match result {
            Ok(count) => println!("  vector check passed: {count}"),
            Err(error) => println!("  {error}"),
        }
    }
    let kernel = workspace.join("target").join("ward").join("kernel.elf");
    if let Ok(elf) = std::fs::read(&kernel) {
        match vector_check::check(&elf) {
            Ok(count) => println!("kernel {}: vector check passed: {count}", kernel.display()),
            Err(error) => println!("kernel {}: {error}", kernel.display()),
        }
    }
    if outcome.as_intended() {
        println!("the check passes hard-float code and rejects the soft-float build, as intended");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("the check did NOT tell the two builds apart");
        Ok(ExitCode::FAILURE)
    }
}
