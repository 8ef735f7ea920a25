//! The Ward kernel binary: only the entry point; everything else is in the library.
//!
//! Built for `targets/x86_64-ward.json` by `ward build`. On the host this target exists only so
//! that `cargo build --workspace` works; it refuses to run.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("boot/entry.s"), entry = sym ward_kernel::boot::kernel_entry);

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "ward-kernel runs on bare metal only: build the image with `cargo run --release -p ward-tools -- build` and boot it with `ward run`"
    );
    std::process::ExitCode::FAILURE
}
