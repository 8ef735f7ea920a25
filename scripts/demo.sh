#!/usr/bin/env bash
# The main job: installs what is missing, builds the image, then `ward demo` fetches and seals the
# default model, boots Ward under QEMU, releases the model key to the attested enclave, asks one
# question over the encrypted session and prints the answer with timings. Arguments go to
# `ward demo` (e.g. a question of your own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --quiet -p ward-tools -- build
exec cargo run --release --quiet -p ward-tools -- demo "$@"
