#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, and integration tests that start real servers on free ports and
# talk to the real PostgreSQL, Redis and RabbitMQ on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
# Real backends for the adapter suites (override to point elsewhere).
export PIKA_TEST_POSTGRES_URL="${PIKA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PIKA_TEST_REDIS_URL="${PIKA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PIKA_TEST_RABBITMQ_URL="${PIKA_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
