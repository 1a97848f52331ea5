#!/usr/bin/env bash
# The load generator against the API and the worker as two processes on real
# backends: PostgreSQL, RabbitMQ, Redis (loopback), FalkorDB and Milvus
# (scripts/services.sh starts them). Prints the load generator's figures, job
# completion times from the jobs table, and then the highest search rate with
# p99 under 100 ms.
#   scripts/bench-backends.sh [DURATION_SECONDS]   (default 60; ramp steps 20 s)
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
bash scripts/fetch-model.sh
bash scripts/services.sh start
cargo build --release --locked -p pika-dataplane -p pika-tests --bins
bin="$CARGO_TARGET_DIR/release"

run="bench_$(date +%s)"
pg_admin="${PIKA_BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/test}"
psql "$pg_admin" -qc "CREATE DATABASE $run" >/dev/null
export PIKA__STORAGE__META_URL="${pg_admin%/*}/$run"
export PIKA__QUEUE__URL="${PIKA_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export PIKA__QUEUE__NAME="$run.jobs"
export PIKA__CACHE__REDIS_URL="${PIKA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PIKA__STORAGE__GRAPH_URL="falkordb://127.0.0.1:${PIKA_FALKORDB_PORT:-6380}"
export PIKA__STORAGE__GRAPH_NAME="$run"
export PIKA__VECTOR__URL="http://127.0.0.1:${PIKA_MILVUS_PORT:-19530}"
export PIKA__VECTOR__COLLECTION_PREFIX="$run"
export PIKA__WORKER__IN_PROCESS=false
export PIKA__WORKER__LISTEN=127.0.0.1:0
export PIKA__WORKER__CONCURRENCY="${PIKA_BENCH_WORKERS:-2}"
export RUST_LOG=warn

data="$(mktemp -d)"
port="${PIKA_BENCH_PORT:-18091}"
"$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/api.log" 2>&1 &
api=$!
"$bin/pika-dataplane" --data-dir "$data" worker >"$data/worker.log" 2>&1 &
worker=$!
cleanup() {
  kill "$api" "$worker" 2>/dev/null || true
  wait "$api" "$worker" 2>/dev/null || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $run" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q 'listening on' "$data/api.log" 2>/dev/null && grep -q 'worker health' "$data/worker.log" 2>/dev/null && break
  sleep 0.1
done
key="$(grep -o 'pika_live_sk_[A-Za-z0-9]*' "$data/api.log")"
lg() { "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$key" --users 20 "$@"; }
jobs_sql() { psql "$PIKA__STORAGE__META_URL" -Atc "$1"; }
wait_jobs() {
  for _ in $(seq 1 600); do
    [ "$(jobs_sql "SELECT count(*) FROM jobs WHERE state IN ('queued','processing')")" = "0" ] && return 0
    sleep 1
  done
}

echo "== SDD mix (70% search, 30% extract), 50 rps, ${dur} s; API + worker processes on real backends"
lg --rate 50 --duration "$dur" --prefill 3
wait_jobs
echo "== job completion (accepted -> completed), from the jobs table"
jobs_sql "SELECT 'jobs ' || count(*) || ', completed ' || count(*) FILTER (WHERE state='completed') || ', failed ' || count(*) FILTER (WHERE state='failed') || ', p50 ' || round(1000*percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)))::text || ' ms, p95 ' || round(1000*percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)))::text || ' ms' FROM jobs"
echo "== highest search rate with p99 < 100 ms"
lg --ramp 50:25:400 --duration 20 --search-fraction 1.0 --prefill 0 --p99-budget-ms 100
