#!/usr/bin/env bash
# Checks that Ward's image is reproducible: the firmware image and the kernel ELF built from the
# same sources in two differently named folders, with separate target directories, must be
# byte-for-byte equal. Equal images mean equal launch measurements; the script prints the SNP
# measurement and MRTD of the result for the record.
#
#   scripts/check-reproducible.sh [REVISION]   two clean builds of a committed revision (HEAD)
#   scripts/check-reproducible.sh --against-tree
#                                              one clean build of this working tree in another
#                                              folder, compared with the tree's own `ward build`
#                                              output in target/ward (what the test command runs
#                                              right after `ward build`: one extra build, not two)
#
# Exit status 0 when the builds are bit-identical, 1 when they differ (the first differing
# offsets are shown). Each build is a full bare-metal build (a few minutes on 2 cores).
#
# What varies between the builds: the source path and its length, the target directories, the
# time. What does not: the toolchain (pinned by rust-toolchain.toml), the dependency versions
# (Cargo.lock) and CARGO_HOME (both builds share the registry cache; its path is remapped to
# /cargo by `ward build`, as the source path is to /ward).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/ward-repro.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

build_in() {
    local ward_bin=$1 dir=$2 label=$3 start
    start=$(date +%s)
    (cd "$dir" && "$ward_bin" build --out "$dir/out" >"$dir/build.log" 2>&1) || {
        cat "$dir/build.log" >&2
        echo "check-reproducible: $label failed" >&2
        exit 1
    }
    echo "check-reproducible: $label in $dir took $(($(date +%s) - start)) s" >&2
}

if [ "${1:-}" = "--against-tree" ]; then
    # The tree's own build must exist: the test command runs `ward build` first.
    reference="$root/target/ward"
    ward_bin="$root/target/release/ward"
    for file in "$ward_bin" "$reference/ward.img" "$reference/kernel.elf"; do
        [ -f "$file" ] || { echo "check-reproducible: $file missing; run 'ward build' first" >&2; exit 1; }
    done
    copy="$work/second-build-in-a-longer-folder-name/src/ward"
    mkdir -p "$copy"
    # Tracked and untracked-but-not-ignored files: exactly the sources `ward build` just saw.
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done |
        tar --null -T - -c | tar -x -C "$copy"
    echo "check-reproducible: rebuilding this tree in another folder" >&2
    build_in "$ward_bin" "$copy" "second build"
    first_out=$reference
    second_out="$copy/out"
else
    revision=${1:-HEAD}
    commit=$(git rev-parse --verify "$revision^{commit}")
    copies=("$work/a/ward" "$work/second-build-in-a-longer-folder-name/src/ward")
    for dir in "${copies[@]}"; do
        mkdir -p "$dir"
        git -C "$root" archive "$commit" | tar -x -C "$dir"
    done
    echo "check-reproducible: building $commit twice" >&2
    # The host tool itself is not part of the measured image; build it once, in the first copy.
    ward_bin="${copies[0]}/target/release/ward"
    (cd "${copies[0]}" && cargo build --release --quiet -p ward-tools)
    build_in "$ward_bin" "${copies[0]}" "build 1"
    build_in "$ward_bin" "${copies[1]}" "build 2"
    first_out="${copies[0]}/out"
    second_out="${copies[1]}/out"
fi

status=0
for file in ward.img kernel.elf; do
    a="$first_out/$file"
    b="$second_out/$file"
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
    image="$first_out/ward.img"
    echo "snp measurement (1 vCPU, EPYC-v4): $("$ward_bin" measure snp --image "$image" --vcpus 1 --vcpu-type EPYC-v4 | tail -n 1)"
    echo "tdx mrtd: $("$ward_bin" measure tdx --image "$image" | tail -n 1)"
fi
exit "$status"
