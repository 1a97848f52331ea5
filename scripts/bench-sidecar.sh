#!/usr/bin/env bash
# The sidecar's cache measured from a client: one dataplane (embedded storage,
# generations and invalidations on the loopback Redis) and two sidecars A and
# B sharing that Redis; pika-cachebench prints L0 and L1 hit latency, the
# overhead on a miss (sidecar vs direct, same run) and a 90% hit mix at rising
# rates. Everything runs on this machine's cores.
#   scripts/bench-sidecar.sh [extra pika-cachebench flags, e.g. --rates 1000,2000]
# PIKA_BENCH_TLS=1: the sidecars serve HTTPS (a private CA from pika-testcert),
# so the same run measures what TLS costs a client.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
# The local embedder runs each batch on one thread (docs/OPERATIONS.md).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
# With PIKA_BENCH_BIN (below) every binary comes from there: nothing to build.
if [ -z "${PIKA_BENCH_BIN:-}" ]; then
  cargo build --release --locked -p pika-dataplane -p pika-sidecar -p pika-tests --bins
fi
# PIKA_BENCH_BIN: a folder of already built binaries (an older build, to
# compare in one run); the build above is then only for the benchmark tools.
bin="${PIKA_BENCH_BIN:-$CARGO_TARGET_DIR/release}"
export PIKA__CACHE__REDIS_URL="${PIKA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PIKA_SIDECAR__REDIS__URL="$PIKA__CACHE__REDIS_URL"
# Both sidecars seal L1 with one key, so B reads what A cached (as in a pod fleet).
export PIKA_SIDECAR__REDIS__SEAL_KEY="${PIKA_SIDECAR__REDIS__SEAL_KEY:-$(head -c 32 /dev/urandom | base64)}"
export RUST_LOG=warn
data="$(mktemp -d)"
dp=18291 a=18290 b=18292
"$bin/pika-dataplane" --data-dir "$data" serve --listen "127.0.0.1:$dp" >"$data/dp.log" 2>&1 &
pids=($!)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$data" ${pki:+"$pki"}
}
trap cleanup EXIT
for _ in $(seq 1 300); do grep -q 'listening on' "$data/dp.log" 2>/dev/null && break; sleep 0.1; done
# The first admin key goes to a file (since issue 12), older builds logged it.
key="$(cat "$data/bootstrap-admin.key" 2>/dev/null || grep -o 'pika_live_sk_[A-Za-z0-9]*' "$data/dp.log")"
scheme=http
tls_args=()
if [ "${PIKA_BENCH_TLS:-0}" = 1 ]; then
  pki="$("$CARGO_TARGET_DIR/release/pika-testcert")"
  export PIKA_SIDECAR__TLS__CERT_FILE="$pki/tls.crt" PIKA_SIDECAR__TLS__KEY_FILE="$pki/tls.key"
  scheme=https
  tls_args=(--ca "$pki/ca.crt")
fi
for port in $a $b; do
  # Rate limit off: the load generator uses one key for everything.
  # PIKA_BENCH_SIDECAR_ARGS: extra flags (@DATA@ is the dataplane's data folder;
  # builds before issue 11 read keys from it with --data-dir @DATA@).
  extra=(${PIKA_BENCH_SIDECAR_ARGS:-})
  extra=("${extra[@]//@DATA@/$data}")
  "$bin/pika-sidecar" "${extra[@]}" --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$dp" \
    --rate-limit-per-second 0 >"$data/sidecar-$port.log" 2>&1 &
  pids+=($!)
done
for port in $a $b; do
  for _ in $(seq 1 300); do grep -q 'sidecar listening' "$data/sidecar-$port.log" 2>/dev/null && break; sleep 0.1; done
done
# The certificate names localhost, not 127.0.0.1.
host=127.0.0.1
[ "$scheme" = https ] && host=localhost
"$bin/pika-cachebench" --sidecar-a "$scheme://$host:$a" --sidecar-b "$scheme://$host:$b" \
  --direct "http://127.0.0.1:$dp" --key "$key" "${tls_args[@]}" "$@"
