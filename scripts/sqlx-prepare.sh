#!/usr/bin/env bash
# scripts/sqlx-prepare.sh — refresh (or check) `.sqlx/`, the query metadata that sqlx's
# `query!` macros compile against offline.
#
# Usage:
#   bash scripts/sqlx-prepare.sh            # rewrite .sqlx/ from the code; commit the result
#   bash scripts/sqlx-prepare.sh --check    # fail when .sqlx/ does not match the code
#                                           # (scripts/test.sh runs this: the freshness gate)
#
# Needs SWITCHYARD_TEST_DATABASE_URL, an admin URL of a Postgres server (scripts/test.sh
# and `eval "$(bash scripts/dev-deps.sh)"` set it). On that server the script creates a
# scratch database with a unique name, applies `migrations/` to it, runs
#   cargo sqlx prepare [--check] --workspace -- --all-targets
# against it (`--all-targets` takes the queries of the tests too) and drops the database
# again on exit, whatever happened.
#
# sqlx-cli is pinned to the sqlx version of Cargo.toml: when `cargo sqlx --version` says
# anything else, the script installs the pinned one first (cargo install, a few minutes
# once per machine).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SQLX_CLI_VERSION="0.9.0"

check=()
case "${1:-}" in
  "") ;;
  --check) check=(--check) ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

if [[ -z "${SWITCHYARD_TEST_DATABASE_URL:-}" ]]; then
  echo "SWITCHYARD_TEST_DATABASE_URL is not set: eval \"\$(bash scripts/dev-deps.sh)\" first" >&2
  exit 2
fi

# `cargo sqlx --version` prints e.g. "sqlx-cli-sqlx 0.9.0".
installed="$(cargo sqlx --version 2>/dev/null | awk '{ print $NF }' || true)"
if [[ "$installed" != "$SQLX_CLI_VERSION" ]]; then
  echo "installing sqlx-cli $SQLX_CLI_VERSION (found: ${installed:-none})" >&2
  cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked \
    --no-default-features --features postgres,rustls
fi

# The scratch database: same server, user and options as the admin URL, own name.
# URL shape: postgres://user[:password]@host[:port]/database[?options]
admin_url="$SWITCHYARD_TEST_DATABASE_URL"
base="${admin_url%%\?*}"
options=""
if [[ "$admin_url" == *\?* ]]; then
  options="?${admin_url#*\?}"
fi
scratch="sy_sqlx_prepare_$$_${RANDOM}"
DATABASE_URL="${base%/*}/${scratch}${options}"
export DATABASE_URL

cleanup() {
  cargo sqlx database drop -y --database-url "$DATABASE_URL" >/dev/null 2>&1 ||
    echo "warning: could not drop the scratch database $scratch" >&2
}
trap cleanup EXIT

cargo sqlx database create --database-url "$DATABASE_URL"
cargo sqlx migrate run --source migrations --database-url "$DATABASE_URL" >/dev/null
cargo sqlx prepare "${check[@]}" --workspace -- --all-targets
