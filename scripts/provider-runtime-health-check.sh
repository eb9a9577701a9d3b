#!/usr/bin/env bash
# scripts/provider-runtime-health-check.sh — the provider-runtime health check under the
# old system's name: `switchyard health "$@"` against a running platform (README,
# "Checking readiness"; `switchyard health --help`).
#
# Usage: scripts/provider-runtime-health-check.sh [--provider P] [--probe] [--json] \
#          [--url URL] [--token TOKEN]
#
# The gateway and token (an admin's or an operator's) come from --url/--token,
# SWITCHYARD_URL/SWITCHYARD_TOKEN or ~/.config/switchyard/config.toml, as for every
# `switchyard` command. The binary is $SWITCHYARD_BIN when set, else
# target/debug/switchyard, built first. The exit code is the command's: 0 ready,
# 2 environment not ready, 3 runtime unhealthy, 1 the check itself could not be made
# (gateway unreachable, token refused); a usage error also exits 2 but prints no report.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p switchyard --bin switchyard >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/switchyard"
fi
exec "$bin" health "$@"
