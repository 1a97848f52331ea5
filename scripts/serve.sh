#!/usr/bin/env bash
# Runs pika-dataplane on embedded defaults (SQLite under ./data, local MiniLM
# embedder, built-in extractor): fetches the embedding weights if missing,
# builds in release mode, and passes any extra arguments to `serve`.
#   scripts/serve.sh                          # http://127.0.0.1:8081
#   scripts/serve.sh --listen 0.0.0.0:8081
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
exec cargo run --release --locked -p pika-dataplane -- serve "$@"
