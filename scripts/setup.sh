#!/usr/bin/env bash
# Installs what Ward's build, demo and tests need on a fresh Debian machine, skipping what is
# already there: QEMU, the pinned Rust toolchain with rust-src and the bare-metal target, the
# pinned vhost-device-vsock daemon, sev-snp-measure (reference for `ward measure` tests) and the
# default model. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v qemu-system-x86_64 >/dev/null; then
    log "installing qemu-system-x86"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
fi

# rust-toolchain.toml pins the toolchain; `rustup show active-toolchain` installs it if missing.
rustup show active-toolchain >/dev/null
rustup component add rust-src clippy rustfmt >/dev/null 2>&1
rustup target add x86_64-unknown-none >/dev/null 2>&1

vsock_version=0.3.0
if ! vhost-device-vsock --version 2>/dev/null | grep -q "$vsock_version"; then
    log "installing vhost-device-vsock $vsock_version (about 2 minutes)"
    cargo install vhost-device-vsock --version "$vsock_version" --locked --quiet
fi

measure_version=0.0.13
if ! python3 -m pip show sev-snp-measure 2>/dev/null | grep -q "^Version: $measure_version$"; then
    log "installing sev-snp-measure $measure_version"
    python3 -m pip install --quiet --disable-pip-version-check "sev-snp-measure==$measure_version"
fi

scripts/fetch-model.sh >/dev/null
log "ready"
