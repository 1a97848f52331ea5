#!/usr/bin/env bash
# Before/after comparison in one run on this machine: the same benchmarks
# against two builds, interleaved (A, B, A, B), so that the ratio is read
# from one run and not across noisy days.
#   scripts/bench-ab.sh BEFORE_BIN_DIR [ROUNDS]
# BEFORE_BIN_DIR holds pika-dataplane, pika-sidecar, pika-loadgen and
# pika-cachebench of the older build; the newer one is built here. Builds
# from before issue 11 read API keys from the data folder, so their sidecar
# gets `--data-dir` (PIKA_BENCH_SIDECAR_ARGS). Per round and build:
#   1. embedded search: pika-loadgen, searches only, 50 rps for 30 s, 20 users
#      with 3 conversations each, straight to the dataplane;
#   2. scripts/bench-sidecar.sh --rates 500: L0 hit, L1 hit, miss overhead
#      against the same dataplane direct, and a 90% hit mix at 500 rps.
set -euo pipefail
cd "$(dirname "$0")/.."
before="${1:?usage: scripts/bench-ab.sh BEFORE_BIN_DIR [ROUNDS]}"
rounds="${2:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
cargo build --release --locked -p pika-dataplane -p pika-sidecar -p pika-tests --bins
after="$CARGO_TARGET_DIR/release"

search_bench() {
  local bin="$1" data port=18095
  data="$(mktemp -d)"
  "$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 300); do grep -q 'listening on' "$data/server.log" 2>/dev/null && break; sleep 0.1; done
  local key
  # The first admin key goes to a file (since issue 12), older builds logged it.
  key="$(cat "$data/bootstrap-admin.key" 2>/dev/null || grep -o 'pika_live_sk_[A-Za-z0-9]*' "$data/server.log")"
  "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$key" --users 20 \
    --rate 50 --duration 30 --search-fraction 1.0 --prefill 3 || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}

for round in $(seq 1 "$rounds"); do
  for side in before after; do
    if [ "$side" = before ]; then bin="$before"; extra="--data-dir @DATA@"; else bin="$after"; extra=""; fi
    echo "===== round $round, $side ($bin): embedded search, 50 rps, 30 s"
    search_bench "$bin"
    echo "===== round $round, $side ($bin): sidecar"
    PIKA_BENCH_BIN="$bin" PIKA_BENCH_SIDECAR_ARGS="$extra" bash scripts/bench-sidecar.sh --rates 500
  done
done
