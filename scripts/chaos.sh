#!/usr/bin/env bash
# The chaos suite (tests/tests/chaos): API + worker + sidecar on the real
# backends under a steady SDD mix, while every dependency is restarted for
# real (SIGKILL of Milvus, FalkorDB, the worker and the API; stop/start of
# RabbitMQ, Redis and PostgreSQL; a broker network cut; a full disk under the
# embedded store), one at a time and two at once. Prints the table that
# docs/RELIABILITY.md records and writes it to target/chaos-report.md.
#
#   scripts/chaos.sh           # full form: 30 s faults, 20 rps (PIKA_CHAOS_RPS to change)
#   scripts/chaos.sh short     # what CI runs: 6 s faults, 10 rps
#
# It stops and starts this machine's PostgreSQL, Redis and RabbitMQ (as
# root, with the machine's own commands; see scripts/services.sh), and
# starts them all again when it ends, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
form="${1:-full}"
case "$form" in short|full) ;; *) echo "usage: $0 [short|full]" >&2; exit 2 ;; esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
bash scripts/fetch-model.sh
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"
export PIKA_TEST_CHAOS="$form"
export PIKA_CHAOS_REPORT="${PIKA_CHAOS_REPORT:-$PWD/target/chaos-report.md}"
mkdir -p "$(dirname "$PIKA_CHAOS_REPORT")"
# The whole workspace, as the test command builds it (same features: nothing rebuilt twice).
cargo build --release --locked --workspace --bins
cargo test --release --locked --workspace --test chaos -- --nocapture
echo "chaos report: $PIKA_CHAOS_REPORT"
