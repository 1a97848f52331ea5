#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, and integration tests that start real servers on free ports and
# talk to real PostgreSQL, Redis, RabbitMQ and FalkorDB on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
# Servers this machine lacks (FalkorDB); PostgreSQL, Redis and RabbitMQ are expected on loopback.
bash scripts/services.sh start-falkordb
export PIKA_TEST_POSTGRES_URL="${PIKA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PIKA_TEST_REDIS_URL="${PIKA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PIKA_TEST_RABBITMQ_URL="${PIKA_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export PIKA_TEST_FALKORDB_URL="${PIKA_TEST_FALKORDB_URL:-falkordb://127.0.0.1:${PIKA_FALKORDB_PORT:-6380}}"
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
