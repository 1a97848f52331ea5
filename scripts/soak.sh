#!/usr/bin/env bash
# The soak (issue 14): API + worker + sidecar as processes on the real
# backends (PostgreSQL, RabbitMQ, Redis on loopback; FalkorDB and Milvus from
# scripts/services.sh), the SDD mix (70% search / 30% extract) through the
# sidecar for SOAK_MINUTES at SOAK_RATE, then a peak (500 rps, 60 s) and a
# burst (1000 rps, 30 s), then waits for the job backlog to drain.
# Writes to OUT (default target/soak):
#   series.csv   per minute and endpoint: count, p50/p95/p99 ms, errors (pika-loadgen)
#   samples.csv  every 10 s: RSS (KiB), CPU ticks, open descriptors and sockets of
#                every process, and the job backlog (queue_depth from /metrics)
#   phases.csv   when each phase (prefill, soak, peak, burst, drain) began
#   jobs.csv     per minute of acceptance: jobs accepted, completed, failed, and
#                accept-to-completed p50/p95/max seconds (from the jobs table)
#   statements-soak-minA-B.txt  PostgreSQL's top statements per 10 minutes of the
#                soak (pg_stat_statements, when the server preloads it)
#   summary.txt  the figures docs/RELIABILITY.md records: RSS slopes, CPU per
#                process and phase, per-minute latency and errors
#   soak.png     the series plotted (matplotlib, in a virtualenv made once)
#   scripts/soak.sh                     # 30 minutes at 20 rps (the highest sustained here)
#   SOAK_RATE=60 SOAK_MINUTES=5 SOAK_PEAK_RPS=0 SOAK_BURST_RPS=0 scripts/soak.sh  # a probe
# Not part of CI (it runs for more than half an hour).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${SOAK_MINUTES:-30}"
rate="${SOAK_RATE:-20}"
peak="${SOAK_PEAK_RPS:-500}"   # 0 skips the peak
burst="${SOAK_BURST_RPS:-1000}" # 0 skips the burst
drain_limit="${SOAK_DRAIN_SECS:-900}"
out="${OUT:-$PWD/target/soak}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
bash scripts/services.sh start
cargo build --release --locked --workspace --bins
bin="$CARGO_TARGET_DIR/release"
mkdir -p "$out"
rm -f "$out/series.csv" "$out/samples.csv" "$out/phases.csv" "$out/jobs.csv" "$out/soak.png"

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
# The per-key rate limit (100/s by default) would answer most of a 500 rps
# peak from one key with 429: off unless SOAK_RATE_LIMIT says otherwise.
"$bin/pika-sidecar" --listen "127.0.0.1:$side" --upstream "http://127.0.0.1:$port" \
  --rate-limit-per-second "${SOAK_RATE_LIMIT:-0}" >"$data/sidecar.log" 2>&1 &
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

# Every 10 s: RSS, CPU ticks (utime + stime), open descriptors and sockets of
# each process, and the job backlog. Times are Unix seconds, as in phases.csv.
pid_of() { pgrep -f "$1" | head -1; }
sample() {
  # A process that ends between listing and reading (a PostgreSQL backend)
  # must not end the sampler: no errexit or pipefail in here.
  set +e +o pipefail
  echo "t_s,process,rss_kib,cpu_ticks,fds,sockets" >"$out/samples.csv"
  while true; do
    local t
    t="$(date +%s)"
    # PostgreSQL is a process per connection: its row sums the postmaster and
    # every backend, RSS as PSS (shared buffers split among the processes
    # touching them, not counted once per backend), and its "sockets" are the
    # connections open to this run's database.
    for entry in "api:$api" "worker:$worker" "sidecar:$sidecar" \
      "milvus:$(pid_of 'milvus run standalone')" "falkordb:$(pid_of 'falkordb/bin/redis-server')" \
      "redis:$(pid_of 'redis-server .*:6379')" "rabbitmq:$(pid_of 'beam.smp')" \
      "postgres:$(pgrep -x postgres | tr '\n' ' ')"; do
      local name="${entry%%:*}" pids="${entry#*:}"
      local rss=0 ticks=0 fds=0 socks=0 found=0
      for pid in $pids; do
        [ -r "/proc/$pid/status" ] || continue
        local r k f so
        if [ "$name" = postgres ]; then
          r="$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)"
        else
          r="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
        fi
        # Fields after the command name (which may hold spaces): utime is 14, stime 15.
        k="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')"
        f="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        so="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l)"
        [ -n "$r" ] && [ -n "$k" ] || continue # it ended meanwhile
        found=1
        rss=$((rss + r)) ticks=$((ticks + k)) fds=$((fds + f)) socks=$((socks + so))
      done
      if [ "$name" = postgres ]; then
        socks="$(psql "$PIKA__STORAGE__META_URL" -qAt -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" 2>/dev/null || echo 0)"
      fi
      [ "$found" = 1 ] && echo "$t,$name,$rss,$ticks,$fds,$socks" >>"$out/samples.csv"
    done
    local depth
    depth="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^queue_depth / {print $2}')"
    echo "$t,queue_depth,${depth:-0},0,0,0" >>"$out/samples.csv"
    sleep 10
  done
}
phase() { echo "$(date +%s),$1" >>"$out/phases.csv"; echo "== $1: $2"; }
sample &
sampler=$!

# Where PostgreSQL's time goes, per 10 minutes of the soak: the top statements
# of this run's database from pg_stat_statements, reset after each dump. Only
# when the server preloads it (shared_preload_libraries = 'pg_stat_statements',
# a restart); otherwise skipped with a line.
pgss() { psql "$PIKA__STORAGE__META_URL" -qAt -c "$1" >/dev/null 2>&1; }
statements() {
  psql "$PIKA__STORAGE__META_URL" -qA -F' | ' --pset footer=off -c "
    SELECT round(total_exec_time::numeric / 1000, 1) AS total_s, calls,
           round((total_exec_time / greatest(calls, 1))::numeric, 2) AS mean_ms, rows,
           left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT 15" >"$out/statements-$1.txt" 2>&1
  pgss "SELECT pg_stat_statements_reset()"
}
rm -f "$out"/statements-*.txt
pgss_dumper() {
  if ! { pgss "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" && pgss "SELECT pg_stat_statements_reset()"; }; then
    echo "pg_stat_statements is not loaded: no per-statement figures" >"$out/statements-none.txt"
    return
  fi
  for m in $(seq 10 10 "$minutes"); do
    sleep 600
    statements "soak-min$((m - 10))-$m"
  done
}

lg() { "$bin/pika-loadgen" --url "http://127.0.0.1:$side" --key "$key" --users 50 "$@"; }
backlog() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^queue_depth / {print $2}'; }
{
  echo "t_s,phase" >"$out/phases.csv"
  phase prefill "2 conversations for each of 50 children"
  lg --prefill 2 --prefill-only
  phase soak "${minutes} min at ${rate} rps (70% search / 30% extract) through the sidecar"
  pgss_dumper &
  lg --rate "$rate" --duration $((minutes * 60)) --prefill 0 --interval-secs 60 --series-file "$out/series.csv"
  if [ "$peak" != 0 ]; then
    phase peak "${peak} rps for 60 s"
    lg --rate "$peak" --duration 60 --prefill 0 --interval-secs 10
  fi
  if [ "$burst" != 0 ]; then
    phase burst "${burst} rps for 30 s"
    lg --rate "$burst" --duration 30 --prefill 0 --interval-secs 10
  fi
  phase drain "waiting up to ${drain_limit} s for the job backlog to drain"
  drain_start=$SECONDS
  while [ "$(backlog)" != 0 ] && [ $((SECONDS - drain_start)) -lt "$drain_limit" ]; do sleep 5; done
  echo "backlog $(backlog) after $((SECONDS - drain_start)) s of draining"
  phase end "load over"
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^(queue_depth|jobs_in_state|graph_repair_backlog|jobs_requeued_total)'
} | tee "$out/run.txt"

# Jobs per minute of acceptance, and how long each took to complete.
psql "$PIKA__STORAGE__META_URL" -qAF, --pset footer=off -c "
  SELECT (extract(epoch FROM date_trunc('minute', created_at)))::bigint AS minute,
         count(*) AS accepted,
         count(*) FILTER (WHERE state = 'completed') AS completed,
         count(*) FILTER (WHERE state = 'failed') AS failed,
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at))
               FILTER (WHERE state = 'completed')::numeric, 2) AS p50_s,
         round(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at))
               FILTER (WHERE state = 'completed')::numeric, 2) AS p95_s,
         round(max(extract(epoch FROM updated_at - created_at)) FILTER (WHERE state = 'completed')::numeric, 2) AS max_s
  FROM jobs GROUP BY 1 ORDER BY 1" >"$out/jobs.csv"

# matplotlib for the plot, in a virtualenv made once (the summary runs without it).
py=python3
venv="$HOME/.cache/pika-tools/plot-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib || rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] && py="$venv/bin/python"

# The summary: RSS slope per process over the soak (KiB per minute, least
# squares; a leak shows as a slope), CPU per process and phase (where the time
# goes), descriptors and sockets, the backlog, and the per-minute series.
"$py" - "$out" <<'PY' | tee "$out/summary.txt"
import csv, sys, collections
out = sys.argv[1]
phases = [(int(r["t_s"]), r["phase"]) for r in csv.DictReader(open(f"{out}/phases.csv"))]
span = {name: (t, phases[i + 1][0] if i + 1 < len(phases) else 1 << 62) for i, (t, name) in enumerate(phases)}
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
by = collections.defaultdict(list)
for r in rows:
    by[r["process"]].append((int(r["t_s"]), int(r["rss_kib"] or 0), int(r["cpu_ticks"] or 0),
                             int(r["fds"] or 0), int(r["sockets"] or 0)))
procs = sorted(n for n in by if n != "queue_depth")
soak_lo, soak_hi = span.get("soak", (0, 1 << 62))
def within(pts, lo, hi):
    return [p for p in pts if lo <= p[0] < hi]
print("RSS over the soak phase (slope by least squares), descriptors and sockets over the whole run")
print("(postgres: all its processes, RSS as PSS, sockets = connections to this run's database)")
print("process     first RSS MiB  last RSS MiB  slope KiB/min   fds first..max..last  sockets first..max..last")
for name in procs:
    pts = within(by[name], soak_lo, soak_hi)
    if len(pts) < 3:
        continue
    n = len(pts); mx = sum(p[0] for p in pts) / n; my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts) or 1
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx * 60
    allp = by[name]
    fds = f"{allp[0][3]}..{max(p[3] for p in allp)}..{allp[-1][3]}"
    socks = f"{allp[0][4]}..{max(p[4] for p in allp)}..{allp[-1][4]}"
    print(f"{name:<11} {pts[0][1]/1024:13.1f} {pts[-1][1]/1024:13.1f} {slope:14.1f}   {fds:>20}  {socks:>24}")
print()
print("CPU per process and phase, in CPU-seconds per wall-clock minute (2 cores = 120)")
shown = [p for p in ("soak", "peak", "burst", "drain") if p in span]
print("process     " + "".join(f"{p:>9}" for p in shown))
for name in procs:
    cells = []
    for p in shown:
        pts = within(by[name], *span[p])
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            cells.append(f"{'-':>9}")
            continue
        cells.append(f"{(pts[-1][2] - pts[0][2]) / 100 / (pts[-1][0] - pts[0][0]) * 60:9.1f}")
    print(f"{name:<11} " + "".join(cells))
depth = [(p[0], p[1]) for p in by.get("queue_depth", [])]
for p in shown:
    d = [v for t, v in depth if span[p][0] <= t < span[p][1]]
    if d:
        print(f"job backlog during {p}: max {max(d)}, last {d[-1]}")
print()
series = [l.strip().split(",") for l in open(f"{out}/series.csv") if l.startswith("series,")]
print("soak, per minute")
print("minute endpoint  count   p50 ms   p95 ms   p99 ms  errors  error %")
totals = collections.Counter()
for s in series:
    count, errors = int(s[4]), int(s[8])
    totals[(s[3], "count")] += count; totals[(s[3], "errors")] += errors
    print(f"{int(s[1]):>6} {s[3]:<8} {count:>6} {float(s[5]):8.1f} {float(s[6]):8.1f} {float(s[7]):8.1f} {errors:>7} {100 * errors / max(count, 1):8.3f}")
for ep in ("search", "extract"):
    c, e = totals[(ep, "count")], totals[(ep, "errors")]
    print(f"soak total {ep}: {c} requests, {e} errors ({100 * e / max(c, 1):.3f} %)")
print()
jobs = list(csv.DictReader(open(f"{out}/jobs.csv")))
print("jobs by minute of acceptance: accepted, completed, failed, accept-to-completed p50/p95/max s")
t0 = int(jobs[0]["minute"]) if jobs else 0
for j in jobs:
    print(f"{(int(j['minute']) - t0) // 60:>4} {j['accepted']:>6} {j['completed']:>6} {j['failed']:>4}"
          f" {j['p50_s'] or '-':>7} {j['p95_s'] or '-':>7} {j['max_s'] or '-':>7}")
acc = sum(int(j["accepted"]) for j in jobs); done = sum(int(j["completed"]) for j in jobs)
fail = sum(int(j["failed"]) for j in jobs)
print(f"jobs: {acc} accepted, {done} completed, {fail} failed, {acc - done - fail} not finished")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(4, 1, figsize=(10, 13))
    for ep in ("search", "extract"):
        for q, col, style in (("p50", 5, ":"), ("p99", 7, "-")):
            pts = [(int(s[1]), float(s[col])) for s in series if s[3] == ep]
            ax[0].plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{ep} {q}")
    ax[0].set_ylabel("ms"); ax[0].set_xlabel("soak minute"); ax[0].legend(); ax[0].set_title("latency per minute (soak)")
    start = phases[0][0] if phases else 0
    for name in procs:
        pts = by[name]
        ax[1].plot([(p[0] - start) / 60 for p in pts], [p[1] / 1024 for p in pts], label=name)
        cpu = [((b[0] - start) / 60, max(0, b[2] - a[2]) / (b[0] - a[0]) if b[0] > a[0] else 0) for a, b in zip(pts, pts[1:])]
        ax[2].plot([c[0] for c in cpu], [c[1] for c in cpu], label=name)
    ax[1].set_ylabel("RSS MiB"); ax[1].legend(fontsize=7); ax[1].set_title("resident memory")
    ax[2].set_ylabel("CPU % of one core"); ax[2].legend(fontsize=7); ax[2].set_title("CPU")
    ax[3].plot([(t - start) / 60 for t, _ in depth], [v for _, v in depth]); ax[3].set_ylabel("jobs"); ax[3].set_title("job backlog")
    for a in ax[1:]:
        a.set_xlabel("minute since start")
        for t, name in phases:
            a.axvline((t - start) / 60, color="grey", lw=0.5)
            a.text((t - start) / 60, a.get_ylim()[1], name, fontsize=7, va="top")
    fig.tight_layout(); fig.savefig(f"{out}/soak.png", dpi=80)
    print(f"plot: {out}/soak.png")
except ImportError:
    print("(no matplotlib: no plot)")
PY
