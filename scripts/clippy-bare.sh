#!/usr/bin/env bash
# clippy -D warnings on the bare-metal builds of the loader and the kernel (the host build of
# those crates compiles only their host-testable parts, so this is the check that covers the
# firmware and kernel code). Same target and flags as `ward build`, own target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=target/ward/clippy
for crate in ward-loader ward-kernel; do
    cargo clippy --quiet --release -p "$crate" --bins \
        --target targets/x86_64-ward.json \
        -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem -Zjson-target-spec \
        -- -D warnings
done
