#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, and integration tests that start real servers on free ports and
# talk to real PostgreSQL, Redis, RabbitMQ, FalkorDB and Milvus on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-model.sh
# Servers this machine lacks (FalkorDB, Milvus); PostgreSQL, Redis and RabbitMQ are expected on loopback.
# A server that fails to start fails the run.
bash scripts/services.sh start-falkordb
bash scripts/services.sh start-milvus
export PIKA_TEST_POSTGRES_URL="${PIKA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PIKA_TEST_REDIS_URL="${PIKA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PIKA_TEST_RABBITMQ_URL="${PIKA_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export PIKA_TEST_MILVUS_URL="${PIKA_TEST_MILVUS_URL:-http://127.0.0.1:${PIKA_MILVUS_PORT:-19530}}"
export PIKA_TEST_FALKORDB_URL="${PIKA_TEST_FALKORDB_URL:-falkordb://127.0.0.1:${PIKA_FALKORDB_PORT:-6380}}"
# Mem0's Python clients, for the compatibility tests (a virtualenv each, made once).
eval "$(bash scripts/mem0-clients.sh)"
# Schemathesis, the schema-driven fuzzer run against our OpenAPI document.
eval "$(bash scripts/schemathesis.sh)"
# promtool, for the alerting rules' tests.
eval "$(bash scripts/promtool.sh)"
bash scripts/check-manifests.sh
bash scripts/deny.sh
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
# The chaos suite's short form (tests/tests/chaos): each fault once under a
# small load. It stops and starts this machine's PostgreSQL, Redis and
# RabbitMQ; PIKA_TEST_CHAOS=off skips it.
export PIKA_TEST_CHAOS="${PIKA_TEST_CHAOS:-short}"
cargo test --release --locked --workspace
