#!/usr/bin/env bash
# Runs pika-dataplane on embedded defaults (SQLite under ./data, local MiniLM
# embedder, built-in extractor): fetches the embedding weights if missing,
# builds in release mode, and passes any extra arguments to `serve`.
#   scripts/serve.sh                          # http://127.0.0.1:8081
#   scripts/serve.sh --listen 0.0.0.0:8081
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
# The local embedder runs each batch on one thread (embedding.threads of them);
# candle would otherwise also split every matrix product over all cores, which
# on a small machine contends with the rest of the service (docs/OPERATIONS.md).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
exec cargo run --release --locked -p pika-dataplane -- serve "$@"
