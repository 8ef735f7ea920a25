#!/usr/bin/env bash
# Checks that Ward's image is reproducible: builds a committed revision (default HEAD) twice, from
# two clean copies in differently named folders with separate target directories, and compares
# the firmware image and the kernel ELF byte for byte. Equal images mean equal launch
# measurements; the script prints the SNP measurement and MRTD of the result for the record.
#
#   scripts/check-reproducible.sh [REVISION]
#
# Exit status 0 when both builds are bit-identical, 1 when they differ (the first differing
# offsets are shown). Takes two full bare-metal builds (several minutes on 2 cores).
#
# What varies between the builds: the source path and its length, the target directories, the
# time. What does not: the toolchain (pinned by rust-toolchain.toml), the dependency versions
# (Cargo.lock) and CARGO_HOME (both builds share the registry cache; its path is remapped to
# /cargo by `ward build`, as the source path is to /ward).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
revision=${1:-HEAD}
commit=$(git rev-parse --verify "$revision^{commit}")

work=$(mktemp -d "${TMPDIR:-/tmp}/ward-repro.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# The host tool itself is not part of the measured image; build it once, in the first copy.
copies=("$work/a/ward" "$work/second-build-in-a-longer-folder-name/src/ward")
for dir in "${copies[@]}"; do
    mkdir -p "$dir"
    git -C "$root" archive "$commit" | tar -x -C "$dir"
done

echo "check-reproducible: building $commit twice" >&2
ward_bin="${copies[0]}/target/release/ward"
(cd "${copies[0]}" && cargo build --release --quiet -p ward-tools)

for i in 0 1; do
    dir=${copies[$i]}
    start=$(date +%s)
    (cd "$dir" && "$ward_bin" build --out "$dir/out" >"$dir/build.log" 2>&1) || {
        cat "$dir/build.log" >&2
        echo "check-reproducible: build $((i + 1)) failed" >&2
        exit 1
    }
    echo "check-reproducible: build $((i + 1)) in $dir took $(($(date +%s) - start)) s" >&2
done

status=0
for file in ward.img kernel.elf; do
    a="${copies[0]}/out/$file"
    b="${copies[1]}/out/$file"
    sum_a=$(sha384sum "$a" | cut -d' ' -f1)
    sum_b=$(sha384sum "$b" | cut -d' ' -f1)
    if [ "$sum_a" = "$sum_b" ]; then
        echo "identical  $file  $(stat -c %s "$a") bytes  sha384 $sum_a"
    else
        echo "DIFFERENT  $file  $sum_a != $sum_b"
        cmp -l "$a" "$b" | head -20 || true
        status=1
    fi
done

if [ "$status" -eq 0 ]; then
    image="${copies[0]}/out/ward.img"
    echo "snp measurement (1 vCPU, EPYC-v4): $("$ward_bin" measure snp --image "$image" --vcpus 1 --vcpu-type EPYC-v4 | tail -n 1)"
    echo "tdx mrtd: $("$ward_bin" measure tdx --image "$image" | tail -n 1)"
fi
exit "$status"
