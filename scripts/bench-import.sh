#!/usr/bin/env bash
# Import throughput of a Mem0 export (issue 13): generates N synthetic
# memories (tests/mem0/gen_export.py), imports them twice into a fresh
# embedded store with the local embedder (the second run must add nothing),
# then serves the store and searches for an imported memory through the Mem0
# route. Prints the import summaries; record them in docs/BENCHMARKS.md.
#   bash scripts/bench-import.sh [N] [USERS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"; users="${2:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
bash scripts/fetch-model.sh >/dev/null
cargo build --release --locked -p pika-dataplane --bin pika-dataplane >&2
bin="$CARGO_TARGET_DIR/release/pika-dataplane"
work="$(mktemp -d)"; trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 tests/mem0/gen_export.py "$n" "$users" > "$work/export.json"
echo "export: $n memories of $users users, $(du -h "$work/export.json" | cut -f1)"
export RUST_LOG=warn
for run in first second; do
  echo "--- $run run"
  /usr/bin/time -f "wall %e s, max RSS %M KB" "$bin" --data-dir "$work/data" import "$work/export.json"
done
"$bin" --data-dir "$work/data" serve --listen 127.0.0.1:0 > "$work/serve.log" 2>&1 & server=$!
for _ in $(seq 1 100); do grep -q '^listening on' "$work/serve.log" && break; sleep 0.2; done
base="$(sed -n 's/^listening on //p' "$work/serve.log")"
key="$(cat "$(sed -n 's/^admin api key written to \(.*\) (shown once)$/\1/p' "$work/serve.log")")"
echo "--- search for an imported memory (child-0007, 'dinosaurs')"
curl -s "$base/v3/memories/search/" -H "Authorization: Token $key" -H 'content-type: application/json' \
  -d '{"query": "dinosaurs", "filters": {"user_id": "child-0007"}, "top_k": 3}' \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(len(r), "results;", [x["memory"] for x in r])'
curl -s "$base/v3/memories/?page=1&page_size=1" -H "Authorization: Token $key" -H 'content-type: application/json' \
  -d '{"filters": {"user_id": "child-0007"}}' | python3 -c 'import json,sys; print("child-0007 holds", json.load(sys.stdin)["count"], "memories")'
