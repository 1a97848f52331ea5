#!/usr/bin/env bash
# The cost of durable accepts in embedded mode (storage.durable_commits:
# SQLite synchronous=FULL, an fsync per commit, against NORMAL): the same
# extract-only load against `pika-dataplane serve` on embedded defaults,
# alternating the two settings, in one run. Prints each run's accept
# latencies (pika-loadgen).
#   scripts/bench-durable.sh [RATE] [SECONDS] [ROUNDS]   (default 50 rps, 30 s, 2 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-50}"; secs="${2:-30}"; rounds="${3:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
bash scripts/fetch-model.sh
cargo build --release --locked --workspace --bins
bin="$CARGO_TARGET_DIR/release"
export RUST_LOG=warn
for round in $(seq 1 "$rounds"); do
  for durable in true false; do
    data="$(mktemp -d)"
    PIKA__STORAGE__DURABLE_COMMITS=$durable "$bin/pika-dataplane" --data-dir "$data" serve --listen 127.0.0.1:18291 >"$data/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do grep -q 'listening on' "$data/log" 2>/dev/null && break; sleep 0.1; done
    key="$(cat "$data/bootstrap-admin.key")"
    echo "== round $round, durable_commits=$durable, extracts only at $rate rps for $secs s"
    "$bin/pika-loadgen" --url http://127.0.0.1:18291 --key "$key" --rate "$rate" --duration "$secs" \
      --search-fraction 0 --prefill 0 --users 20 | grep -E '^(rate|endpoint|extract)'
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
done
