#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, and integration tests that start real servers on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
