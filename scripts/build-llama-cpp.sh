#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench` and `llama-batched-bench` (CPU only) for `ward bench
# --llama-bench`, reproducibly from a pinned PyPI source archive: llama-cpp-python 0.3.36 vendors
# llama.cpp at commit 0c1e57098 (its CHANGELOG: "update llama.cpp to ggml-org/llama.cpp@0c1e57098").
# PyPI is used because it is reachable where GitHub is not; the archive's SHA-256 is checked.
#
# Build: CMake Release, GGML_NATIVE=ON (this CPU's AVX-512/VNNI) minus AMX (see below), OpenMP,
# static libraries, no OpenSSL/curl, no server/tests/examples, `-j ${JOBS:-2}`. Not part of CI.
# Prints the path of `llama-bench` on its last line (`llama-batched-bench` sits beside it).
set -euo pipefail

version=0.3.36
vendored_commit=0c1e57098
sdist="llama_cpp_python-$version.tar.gz"
url="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/$sdist"
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

cache="${WARD_CACHE:-$HOME/.cache/ward}/llama.cpp"
source_dir="$cache/llama_cpp_python-$version/vendor/llama.cpp"
build_dir="$cache/build-$version"
bench="$build_dir/bin/llama-bench"
batched="$build_dir/bin/llama-batched-bench"

# Tools: only what is missing is installed (cmake is the usual gap; gcc/g++/make and libgomp
# come with build-essential).
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null && command -v make >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-llama-cpp: installing ${missing[*]} with apt" >&2
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$cache"
archive="$cache/$sdist"
if ! { [ -f "$archive" ] && echo "$sha256  $archive" | sha256sum --check --status; }; then
    # A copy fetched earlier by hand (LLAMA_SDIST=path) saves the 77 MB download.
    if [ -n "${LLAMA_SDIST:-}" ] && [ -f "$LLAMA_SDIST" ]; then
        cp "$LLAMA_SDIST" "$archive.partial"
    else
        curl --fail --location --silent --show-error -o "$archive.partial" "$url"
    fi
    echo "$sha256  $archive.partial" | sha256sum --check --status || {
        echo "build-llama-cpp: SHA-256 of $sdist does not match $sha256" >&2
        exit 1
    }
    mv "$archive.partial" "$archive"
fi

if [ ! -f "$source_dir/CMakeLists.txt" ]; then
    tar -xzf "$archive" -C "$cache" "llama_cpp_python-$version/vendor/llama.cpp"
fi

# AMX is switched off: on an Intel host with AMX, `-march=native` turns on ggml's AMX matrix
# path, and this version's `ggml_backend_amx_mul_mat` crashes (SIGSEGV) on the first prompt
# of SmolLM2 Q4_1 here. Without it ggml runs its AVX-512 (VNNI, BF16) kernels, as the
# reference build on AMD EPYC did (no AMX there).
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# The archive has no .git, so the commit is passed in for llama-bench's `build_commit` field.
# Configure and build are incremental: a second run only checks that everything is up to date.
nice cmake -S "$source_dir" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DGGML_OPENMP=ON \
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_RPC=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_BUILD_COMMIT="$vendored_commit" >&2
nice cmake --build "$build_dir" --config Release -j "${JOBS:-2}" \
    --target llama-bench llama-batched-bench >&2

[ -x "$bench" ] && [ -x "$batched" ] || {
    echo "build-llama-cpp: the build did not produce $bench and $batched" >&2
    exit 1
}
echo "$bench"
