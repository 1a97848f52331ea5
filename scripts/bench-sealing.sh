#!/usr/bin/env bash
# The cost of encryption at rest, read from one run: the same embedded
# dataplane with sealing off and on, interleaved (off, on, off, on), each
# on a fresh data folder:
#   ingest: pika-loadgen's prefill (20 users x 3 conversations, each waited
#           for until its job completed: accept, extraction, embedding,
#           sealing, commit), in seconds;
#   serve:  70% searches / 30% extracts at 50 rps for 30 s, p50/p95/p99
#           per endpoint (searches open sealed rows and blind query terms);
#   search: searches only at 50 rps for 30 s (no extraction competing for
#           the CPU: the cleanest view of what sealing adds to a search).
#   scripts/bench-sealing.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh >/dev/null
cargo build --release --locked -p pika-dataplane -p pika-tests --bins
bin="$CARGO_TARGET_DIR/release"

run() {
  local sealing="$1" data port=18096
  data="$(mktemp -d)"
  PIKA__ENCRYPTION__ENABLED="$sealing" "$bin/pika-dataplane" --data-dir "$data" serve \
    --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 300); do grep -q 'listening on' "$data/server.log" 2>/dev/null && break; sleep 0.1; done
  # Searches only first: the mixed run leaves extraction jobs queued.
  "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$(cat "$data/bootstrap-admin.key")" \
    --users 20 --prefill 3 --rate 50 --duration 30 --search-fraction 1.0 || true
  "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$(cat "$data/bootstrap-admin.key")" \
    --users 20 --prefill 0 --rate 50 --duration 30 --search-fraction 0.7 || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}

for round in $(seq 1 "$rounds"); do
  for sealing in false true; do
    echo "===== round $round, encryption.enabled=$sealing"
    run "$sealing"
  done
done
