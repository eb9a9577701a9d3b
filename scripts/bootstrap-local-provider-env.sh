#!/usr/bin/env bash
# scripts/bootstrap-local-provider-env.sh — write the executor's provider credentials
# env file from the agent CLIs' own configuration in your home directory.
#
# Usage: scripts/bootstrap-local-provider-env.sh [--out FILE | FILE]
#        (default: .local/provider-env, which the executor reads by default; see
#        executor.credentials_env_file)
#
# Reads, when present:
#   ~/.codex/auth.json               its OPENAI_API_KEY field     → OPENAI_API_KEY
#                                    (a ChatGPT login — `tokens` and no key — is not
#                                    used: the agents get API keys only; a warning
#                                    names the file)
#   ~/.claude/settings.json          every entry of its env block → KEY=value
#   ~/.config/opencode/opencode.json each provider's options.apiKey → <PROVIDER>_API_KEY
#                                    and options.baseURL            → <PROVIDER>_BASE_URL
#                                    (provider id upper-cased, other characters → _)
# A missing or unreadable file is skipped with a note on stderr. The file is written
# with mode 0600 (atomically: a temporary file renamed over it). No value is ever
# printed: the summary names the variables written. A later source overrides an earlier one for the
# same name (noted on stderr). Needs python3 (standard library only).
set -euo pipefail

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

out=".local/provider-env"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { usage; exit 2; }; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) printf 'bootstrap-local-provider-env: unknown option %s\n' "$1" >&2; usage; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || { usage; exit 2; }
command -v python3 >/dev/null || { echo "bootstrap-local-provider-env: python3 is required" >&2; exit 1; }

exec python3 - "$out" <<'PY'
import json
import os
import re
import sys
import tempfile

out = sys.argv[1]
home = os.path.expanduser("~")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def note(message):
    print(f"bootstrap-local-provider-env: {message}", file=sys.stderr)


def load(path):
    shown = path.replace(home, "~", 1) if path.startswith(home) else path
    if not os.path.isfile(path):
        note(f"{shown} not found, skipped")
        return None, shown
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), shown
    except (OSError, ValueError) as error:
        # The error names the position only: json's messages do not quote the content.
        note(f"{shown} is not readable JSON ({type(error).__name__}), skipped")
        return None, shown


entries = {}
origin = {}


def put(name, value, source):
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or value == "":
        return
    if not NAME.match(name):
        note(f"{source}: {name!r} is not a valid variable name, skipped")
        return
    if name in entries and entries[name] != value:
        note(f"{name} from {source} overrides the one from {origin[name]}")
    entries[name] = value
    origin[name] = source


codex, shown = load(os.path.join(home, ".codex", "auth.json"))
if isinstance(codex, dict):
    put("OPENAI_API_KEY", codex.get("OPENAI_API_KEY"), shown)
    if not codex.get("OPENAI_API_KEY") and codex.get("tokens"):
        # A ChatGPT login: its tokens are the account's own, long-lived credentials.
        # Handing them to agents that run whatever their model asks for would give every
        # run the account, so they are not copied; codex runs need an API key.
        note(
            f"warning: {shown} holds a ChatGPT login (`tokens`) and no OPENAI_API_KEY: "
            "nothing written for codex; the executor passes API keys only, so set "
            "OPENAI_API_KEY (`codex login --with-api-key`, or add it to this file)"
        )

claude, shown = load(os.path.join(home, ".claude", "settings.json"))
if isinstance(claude, dict) and isinstance(claude.get("env"), dict):
    for name, value in claude["env"].items():
        put(name, value, shown)

opencode, shown = load(os.path.join(home, ".config", "opencode", "opencode.json"))
if isinstance(opencode, dict) and isinstance(opencode.get("provider"), dict):
    for provider, config in opencode["provider"].items():
        options = config.get("options") if isinstance(config, dict) else None
        if not isinstance(options, dict):
            continue
        prefix = re.sub(r"[^A-Za-z0-9]", "_", provider).upper()
        put(f"{prefix}_API_KEY", options.get("apiKey"), shown)
        put(f"{prefix}_BASE_URL", options.get("baseURL"), shown)


def quote(value):
    # Single quotes are literal for the executor and for a shell that sources the file;
    # values holding one are double-quoted with \ " $ ` escaped.
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace("\n", "\\n")
    )
    return f'"{escaped}"'


lines = ["# Provider credentials for the Switchyard executor.",
         "# Written by scripts/bootstrap-local-provider-env.sh; keep it private (mode 0600)."]
lines += [f"{name}={quote(value)}" for name, value in entries.items()]
directory = os.path.dirname(os.path.abspath(out))
os.makedirs(directory, mode=0o700, exist_ok=True)
fd, temporary = tempfile.mkstemp(prefix=".provider-env.", dir=directory)
try:
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, out)
except BaseException:
    try:
        os.unlink(temporary)
    except OSError:
        pass
    raise
names = ", ".join(entries) if entries else "nothing"
note(f"wrote {len(entries)} variable(s) to {out}: {names}")
PY
