#!/usr/bin/env bash
# scripts/compose-env.sh — write the secrets docker-compose.yml requires into .env
# (which `docker compose` reads from the project directory), each a fresh random value.
#
# Usage: scripts/compose-env.sh [--out FILE]      (default: .env at the repository root)
#
# docker-compose.yml has no default for any token or password: each is a required
# variable (`${VAR:?…}`), so a deployment never runs on a value printed in a public
# file. This script makes them: the gateway's admin token, the internal token the
# gateway and the control-plane share, the Postgres password and one NATS password per
# service and executor. A variable already in the file (or given a value in the
# environment) is kept, so running it again changes nothing; the file is written with
# mode 0600 and no value is printed. Sign in to the gateway with SWITCHYARD_ADMIN_TOKEN
# from the file.
#
# The provider credentials are another file: scripts/bootstrap-local-provider-env.sh
# writes .local/provider-env, which compose mounts into the executors.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

out=".env"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { usage; exit 2; }; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'compose-env: unknown argument %s\n' "$1" >&2; usage; exit 2 ;;
  esac
done

# Every variable docker-compose.yml requires (crates/switchyard/tests/compose.rs checks
# that this list and the file agree).
names=(
  SWITCHYARD_ADMIN_TOKEN
  SWITCHYARD_INTERNAL_TOKEN
  SWITCHYARD_POSTGRES_PASSWORD
  SWITCHYARD_NATS_CONTROL_PLANE_PASSWORD
  SWITCHYARD_NATS_GATEWAY_PASSWORD
  SWITCHYARD_NATS_EXECUTOR_MANAGER_PASSWORD
  SWITCHYARD_NATS_EXECUTOR_1_PASSWORD
  SWITCHYARD_NATS_EXECUTOR_2_PASSWORD
)

# 32 random bytes as hex: long enough for any token check, and safe inside a URL
# (the Postgres password is part of the database URL) and a NATS config.
random_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

existing=""
[[ -f "$out" ]] && existing="$(cat "$out")"
has() { grep -q "^$1=" <<<"$existing"; }

umask 077
tmp="$(mktemp "$(dirname "$out")/.compose-env.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
{
  if [[ -n "$existing" ]]; then
    printf '%s\n' "$existing"
  else
    printf '# Secrets of docker-compose.yml, written by scripts/compose-env.sh; keep it private.\n'
  fi
  added=()
  for name in "${names[@]}"; do
    has "$name" && continue
    value="${!name:-}"
    # A value from the environment goes into .env, a database URL and a NATS config
    # unquoted: only characters safe in all three (a newline would break .env; `@ : /`
    # the URL). Checked here, where the error can name the variable.
    if [[ -n "$value" && ! "$value" =~ ^[A-Za-z0-9._-]{24,}$ ]]; then
      printf 'compose-env: %s from the environment must be at least 24 characters of A-Z a-z 0-9 . _ - (unset it to get a random one)
' "$name" >&2
      exit 2
    fi
    [[ -n "$value" ]] || value="$(random_secret)"
    printf '%s=%s\n' "$name" "$value"
    added+=("$name")
  done
  if ((${#added[@]} > 0)); then
    printf 'compose-env: wrote %s to %s\n' "${added[*]}" "$out" >&2
  else
    printf 'compose-env: %s already has every variable; nothing changed\n' "$out" >&2
  fi
} >"$tmp"
chmod 600 "$tmp"
mv "$tmp" "$out"
trap - EXIT
