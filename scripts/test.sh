#!/usr/bin/env bash
# Runs every check and test of the project: formatting, clippy on the host crates and on the
# bare-metal kernel build, the image build with its vector-instruction check and a second build
# in another folder that must be bit-identical, then the host unit
# tests, the QEMU boot tests and the end-to-end tests. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export WARD_MODEL="$(scripts/fetch-model.sh)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo run --release --quiet -p ward-tools -- build
# The image must not depend on where it was built (issue 5: same sources, same measurement).
scripts/check-reproducible.sh --against-tree
scripts/clippy-bare.sh
cargo test --workspace --release
