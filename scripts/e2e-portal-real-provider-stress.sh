#!/usr/bin/env bash
# scripts/e2e-portal-real-provider-stress.sh — the stress run under the old system's name:
# `switchyard stress "$@"` against a running platform (README, "Stress runs";
# `switchyard stress --help`).
#
# Usage: scripts/e2e-portal-real-provider-stress.sh --app A [--provider P] --runs N \
#          --concurrency C [--timeout-ms T] [--prompt TEXT] [--option K=V ...] \
#          [--options-json JSON|@FILE] --out DIR [--url URL] [--token TOKEN]
#
# The gateway and token come from --url/--token, SWITCHYARD_URL/SWITCHYARD_TOKEN or
# ~/.config/switchyard/config.toml, as for every `switchyard` command. The binary is
# $SWITCHYARD_BIN when set, else target/debug/switchyard, built first. The exit code is
# the command's: 0 every sample succeeded, 20 at least one failed, 21 interrupted.
set -euo pipefail

# Relative paths in the arguments (--out, --options-json @FILE) stay relative to the
# caller's directory: nothing here changes it.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p switchyard --bin switchyard >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/switchyard"
fi
exec "$bin" stress "$@"
