#!/usr/bin/env bash
# Runs the dataplane (embedded defaults, http://127.0.0.1:8081) with the caching
# sidecar in front of it (http://127.0.0.1:8080): send requests to 8080.
# With Redis (PIKA__CACHE__REDIS_URL for the dataplane, PIKA_SIDECAR__REDIS__URL
# for the sidecar; both default to redis://127.0.0.1:6379 when one answers
# there) the sidecar also has L1 and hears invalidations; without it, L0 only,
# serving nothing older than l0.unsubscribedTtlSeconds.
#   scripts/serve-sidecar.sh                        # default cache policy
#   scripts/serve-sidecar.sh --policy config/cache-policy.example.json
# Extra arguments go to pika-sidecar. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
bash scripts/fetch-model.sh
cargo build --release --locked -p pika-dataplane -p pika-sidecar --bins
bin="${CARGO_TARGET_DIR:-target}/release"
if [ -z "${PIKA__CACHE__REDIS_URL:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  export PIKA__CACHE__REDIS_URL=redis://127.0.0.1:6379
fi
export PIKA_SIDECAR__REDIS__URL="${PIKA_SIDECAR__REDIS__URL:-${PIKA__CACHE__REDIS_URL:-}}"
mkdir -p data
"$bin/pika-dataplane" --data-dir data serve --listen 127.0.0.1:8081 2>&1 | tee data/dataplane.log &
dataplane=$!
trap 'kill $dataplane 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q 'listening on' data/dataplane.log 2>/dev/null && break; sleep 0.1; done
"$bin/pika-sidecar" --listen 127.0.0.1:8080 --upstream http://127.0.0.1:8081 "$@"
