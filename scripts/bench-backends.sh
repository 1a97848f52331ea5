#!/usr/bin/env bash
# The load generator against the API and the worker as two processes on real
# backends: PostgreSQL, RabbitMQ, Redis (loopback), FalkorDB and Milvus
# (scripts/services.sh starts them). Prints the load generator's figures, job
# completion times from the jobs table, and then the highest search rate with
# p99 under 100 ms.
#   scripts/bench-backends.sh [DURATION_SECONDS]   (default 60; ramp steps 20 s)
# PIKA_BENCH_RAMP=0 skips the ramp; PIKA_BENCH_WORKERS and PIKA_BENCH_WORKER_NICE
# set the worker's concurrency (8) and CPU priority (10).
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
# The local embedder runs each batch on one thread (embedding.threads of them);
# candle would otherwise also split every matrix product over all cores, which
# on a small machine contends with the rest of the service (docs/OPERATIONS.md).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
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
# The worker spends most of a job waiting for Milvus to show its writes
# (read-your-writes), so more jobs in flight than cores.
export PIKA__WORKER__CONCURRENCY="${PIKA_BENCH_WORKERS:-8}"
export RUST_LOG=warn

data="$(mktemp -d)"
port="${PIKA_BENCH_PORT:-18091}"
"$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/api.log" 2>&1 &
api=$!
# In production the worker runs in its own pods; on one machine it gets a lower
# CPU priority so that its batch embedding yields to searches, as a separate
# pod with its own CPU would. PIKA_BENCH_WORKER_NICE=0 measures without that.
nice -n "${PIKA_BENCH_WORKER_NICE:-10}" "$bin/pika-dataplane" --data-dir "$data" worker >"$data/worker.log" 2>&1 &
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
key="$(cat "$data/bootstrap-admin.key")"
lg() { "$bin/pika-loadgen" --url "http://127.0.0.1:$port" --key "$key" --users 20 "$@"; }
jobs_sql() { psql "$PIKA__STORAGE__META_URL" -Atc "$1"; }
wait_jobs() {
  for _ in $(seq 1 600); do
    [ "$(jobs_sql "SELECT count(*) FROM jobs WHERE state IN ('queued','processing')")" = "0" ] && return 0
    sleep 1
  done
}

# Where a search spends its time: mean and the bucket holding p99, per step,
# from the API's search_stage_duration_seconds histogram (cumulative).
stages() {
  echo "== search steps (from /metrics; p99 is the upper bound of its histogram bucket)"
  curl -s "http://127.0.0.1:$port/metrics" | awk '
    /^search_stage_duration_seconds_(bucket|sum|count)/ {
      match($0, /stage="[a-z]+"/); st = substr($0, RSTART + 7, RLENGTH - 8)
      if ($0 ~ /_bucket/) { match($0, /le="[^"]+"/); le[st, ++n[st]] = substr($0, RSTART + 4, RLENGTH - 5); c[st, n[st]] = $NF }
      else if ($0 ~ /_sum/) sum[st] = $NF
      else cnt[st] = $NF
    }
    END {
      for (st in cnt) {
        if (cnt[st] == 0) continue
        p99 = "+Inf"
        for (i = 1; i <= n[st]; i++) if (c[st, i] >= 0.99 * cnt[st]) { p99 = le[st, i]; break }
        printf "  %-8s %6d calls, mean %6.1f ms, p99 <= %s s\n", st, cnt[st], 1000 * sum[st] / cnt[st], p99
      }
    }'
}

# CPU seconds used per program (summed over its processes) between two snapshots:
# on one shared machine this says who the load's CPU went to.
cpu_snapshot() {
  ps -eo pid=,comm=,times= | awk -v api="$api" -v worker="$worker" '
    {c = ($1 == api) ? "pika-api" : ($1 == worker) ? "pika-worker" : $2; t[c] += $3}
    END {for (c in t) print c, t[c]}'
}
cpu_report() {
  echo "== CPU seconds per program during the run"
  awk 'NR == FNR {before[$1] = $2; next} {d = $2 - before[$1]; if (d >= 1) printf "  %-18s %5d s\n", $1, d}' "$1" "$2" | sort -k2 -nr
}

echo "== SDD mix (70% search, 30% extract), 50 rps, ${dur} s; API + worker processes on real backends"
lg --prefill 3 --prefill-only
cpu_snapshot >"$data/cpu.before"
lg --rate 50 --duration "$dur" --prefill 0
cpu_snapshot >"$data/cpu.after"
stages
cpu_report "$data/cpu.before" "$data/cpu.after"
wait_jobs
echo "== job completion (accepted -> completed), from the jobs table"
jobs_sql "SELECT 'jobs ' || count(*) || ', completed ' || count(*) FILTER (WHERE state='completed') || ', failed ' || count(*) FILTER (WHERE state='failed') || ', p50 ' || round(1000*percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)))::text || ' ms, p95 ' || round(1000*percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)))::text || ' ms' FROM jobs"
[ "${PIKA_BENCH_RAMP:-1}" = 0 ] && exit 0
echo "== highest search rate with p99 < 100 ms"
lg --ramp 50:25:400 --duration 20 --search-fraction 1.0 --prefill 0 --p99-budget-ms 100
