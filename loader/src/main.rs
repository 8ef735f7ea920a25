//! The Ward loader firmware: booted by QEMU with `-bios`, it runs from the reset vector to the
//! kernel's entry point. Everything hardware-facing lives in `firmware/`; the pure logic is in the
//! library. On the host this binary only explains how to build it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod firmware;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "ward-loader is firmware for targets/x86_64-ward.json: build the image with `ward build`"
    );
    std::process::exit(2);
}
