#!/usr/bin/env bash
# scripts/bench.sh — THE benchmark command: the performance figures next to their raw baselines.
#
# Usage: scripts/bench.sh [--quick] [--json PATH] [--only NAME,...]
#
# 1. Runs scripts/dev-deps.sh (the pinned nats-server in .local/venv, a Postgres) and
#    takes its environment: the benchmark starts its own private nats-server from
#    SWITCHYARD_NATS_SERVER_BIN and creates (and drops) a fresh database on
#    SWITCHYARD_TEST_DATABASE_URL's server, exactly like the tests.
# 2. Builds the release binary: cargo build --release -p switchyard-bench
# 3. Runs target/release/switchyard-bench "$@": prints the table, writes the JSON
#    (default target/bench/latest.json).
#
# NAME for --only: runs, latency, events, clients, replay, executor_memory, scaling.
# --quick is a tiny load of each (seconds; what CI runs through the bench_smoke test).
# Method, machine and results: docs/performance.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

env_lines="$(bash scripts/dev-deps.sh)"
eval "$env_lines"
export SWITCHYARD_NATS_SERVER_BIN SWITCHYARD_TEST_DATABASE_URL

# Ten thousand SSE connections are ten thousand descriptors on each side (the clients
# run in a child process); raise the soft limit as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release -p switchyard-bench
exec target/release/switchyard-bench "$@"
