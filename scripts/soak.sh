#!/usr/bin/env bash
# The soak (issue 14): API + worker + sidecar as processes on the real
# backends (PostgreSQL, RabbitMQ, Redis on loopback; FalkorDB and Milvus from
# scripts/services.sh), the SDD mix (70% search / 30% extract) through the
# sidecar for SOAK_MINUTES at SOAK_RATE, then a peak (500 rps, 60 s) and a
# burst (1000 rps, 30 s). Writes to OUT (default target/soak):
#   series.csv   per minute and endpoint: count, p50/p95/p99 ms, errors (pika-loadgen)
#   samples.csv  every 10 s: RSS (KiB) and open file descriptors of every process,
#                and the job backlog (queue_depth from the API's /metrics)
#   summary.txt  the figures docs/RELIABILITY.md records, RSS slopes included
#   soak.png     the series plotted, where python3 has matplotlib
#   scripts/soak.sh                     # 30 minutes at 40 rps
#   SOAK_RATE=60 SOAK_MINUTES=5 scripts/soak.sh
# Not part of CI (it runs for more than half an hour).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${SOAK_MINUTES:-30}"
rate="${SOAK_RATE:-40}"
out="${OUT:-$PWD/target/soak}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
bash scripts/services.sh start
cargo build --release --locked --workspace --bins
bin="$CARGO_TARGET_DIR/release"
mkdir -p "$out"
rm -f "$out/series.csv" "$out/samples.csv"

run="soak_$(date +%s)"
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
export PIKA__WORKER__CONCURRENCY="${PIKA_BENCH_WORKERS:-8}"
export PIKA_SIDECAR__REDIS__URL="$PIKA__CACHE__REDIS_URL"
export RUST_LOG=warn
data="$(mktemp -d)"
port=18191
side=18190
"$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/api.log" 2>&1 &
api=$!
nice -n "${PIKA_BENCH_WORKER_NICE:-10}" "$bin/pika-dataplane" --data-dir "$data" worker >"$data/worker.log" 2>&1 &
worker=$!
"$bin/pika-sidecar" --listen "127.0.0.1:$side" --upstream "http://127.0.0.1:$port" >"$data/sidecar.log" 2>&1 &
sidecar=$!
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  kill "$api" "$worker" "$sidecar" 2>/dev/null || true
  wait "$api" "$worker" "$sidecar" 2>/dev/null || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $run" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q 'listening on' "$data/api.log" 2>/dev/null && grep -q 'worker health' "$data/worker.log" 2>/dev/null && break
  sleep 0.1
done
key="$(cat "$data/bootstrap-admin.key")"

# Every 10 s: RSS and open descriptors of each process, and the job backlog.
pid_of() { pgrep -f "$1" | head -1; }
sample() {
  echo "t_s,process,rss_kib,fds" >"$out/samples.csv"
  local start=$SECONDS
  while true; do
    local t=$((SECONDS - start))
    for entry in "api:$api" "worker:$worker" "sidecar:$sidecar" \
      "milvus:$(pid_of 'milvus run standalone')" "falkordb:$(pid_of 'falkordb/bin/redis-server')" \
      "redis:$(pid_of 'redis-server .*:6379')" "rabbitmq:$(pid_of 'beam.smp')" \
      "postgres:$(pid_of 'postgres -D|bin/postgres')"; do
      local name="${entry%%:*}" pid="${entry#*:}"
      [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || continue
      local rss fds
      rss="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
      fds="$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)"
      echo "$t,$name,$rss,$fds" >>"$out/samples.csv"
    done
    local depth
    depth="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^queue_depth / {print $2}')"
    echo "$t,queue_depth,${depth:-0},0" >>"$out/samples.csv"
    sleep 10
  done
}
sample &
sampler=$!

lg() { "$bin/pika-loadgen" --url "http://127.0.0.1:$side" --key "$key" --users 50 "$@"; }
{
  echo "== soak: ${minutes} min at ${rate} rps (70% search / 30% extract) through the sidecar"
  lg --prefill 2 --prefill-only
  lg --rate "$rate" --duration $((minutes * 60)) --prefill 0 --interval-secs 60 --series-file "$out/series.csv"
  echo "== peak: 500 rps for 60 s"
  lg --rate 500 --duration 60 --prefill 0 --interval-secs 10
  echo "== burst: 1000 rps for 30 s"
  lg --rate 1000 --duration 30 --prefill 0 --interval-secs 10
  echo "== backlog after the load"
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^(queue_depth|jobs_in_state|graph_repair_backlog) '
} | tee "$out/run.txt"

# RSS slope per process over the soak (KiB per minute, least squares): a leak shows as a slope.
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import csv, sys, collections
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
by = collections.defaultdict(list)
for r in rows:
    by[r["process"]].append((int(r["t_s"]), int(r["rss_kib"] or 0), int(r["fds"] or 0)))
print("process     first RSS MiB  last RSS MiB  slope KiB/min  fds first..last")
for name, pts in sorted(by.items()):
    if name == "queue_depth" or len(pts) < 3:
        continue
    n = len(pts); mx = sum(p[0] for p in pts) / n; my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts) or 1
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx * 60
    print(f"{name:<11} {pts[0][1]/1024:13.1f} {pts[-1][1]/1024:13.1f} {slope:14.1f}  {pts[0][2]}..{pts[-1][2]}")
depth = [int(p[1]) for p in by.get("queue_depth", [])]
if depth:
    print(f"job backlog: max {max(depth)}, last {depth[-1]}")
series = [l.strip().split(",") for l in open(f"{out}/series.csv") if l.startswith("series,")]
print("minute endpoint  count   p50 ms   p95 ms   p99 ms  errors")
for s in series:
    print(f"{int(s[1]):>6} {s[3]:<8} {s[4]:>6} {float(s[5]):8.1f} {float(s[6]):8.1f} {float(s[7]):8.1f} {s[8]:>7}")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(3, 1, figsize=(10, 10), sharex=False)
    for ep in ("search", "extract"):
        pts = [(int(s[1]), float(s[7])) for s in series if s[3] == ep]
        ax[0].plot([p[0] for p in pts], [p[1] for p in pts], label=f"{ep} p99")
    ax[0].set_ylabel("ms"); ax[0].set_xlabel("minute"); ax[0].legend(); ax[0].set_title("p99 per minute")
    for name, pts in sorted(by.items()):
        if name != "queue_depth":
            ax[1].plot([p[0] / 60 for p in pts], [p[1] / 1024 for p in pts], label=name)
    ax[1].set_ylabel("RSS MiB"); ax[1].set_xlabel("minute"); ax[1].legend(fontsize=7)
    q = by.get("queue_depth", [])
    ax[2].plot([p[0] / 60 for p in q], [p[1] for p in q]); ax[2].set_ylabel("job backlog"); ax[2].set_xlabel("minute")
    fig.tight_layout(); fig.savefig(f"{out}/soak.png", dpi=80)
    print(f"plot: {out}/soak.png")
except ImportError:
    print("(no matplotlib: no plot)")
PY
