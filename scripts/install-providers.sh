#!/usr/bin/env bash
# scripts/install-providers.sh — install the pinned agent CLIs into .local/providers.
#
# Usage: scripts/install-providers.sh            # prints the bin directory on stdout
#
# Installs @openai/codex, @anthropic-ai/claude-code and opencode-ai at the versions the
# adapters were written against (shared/protocol-samples) with npm into a project-local
# prefix; the executor finds them in .local/providers/node_modules/.bin (see
# executor.cli_search_path) or on PATH. Idempotent: a second run with everything at the
# pinned versions does nothing. Needs node and npm (Node 20+).
#
# Also installs bubblewrap (`bwrap`), which codex sandboxes its commands with, from the
# Debian package when it is missing, the package is at least 0.9 (codex needs its
# `--argv0`; Debian 12's 0.8 is too old) and apt-get can be used (as root, or through
# sudo without a password); otherwise it says so, and codex uses the copy it bundles
# (the executor keeps codex's "bubblewrap not on PATH" warning out of the evidence).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CODEX_VERSION="0.169.0"
CLAUDE_VERSION="2.1.197"
OPENCODE_VERSION="1.18.33"
PREFIX=".local/providers"
BIN="$PREFIX/node_modules/.bin"

log() { printf 'install-providers: %s\n' "$*" >&2; }

installed_version() {
  local package_json="$PREFIX/node_modules/$1/package.json"
  [[ -f "$package_json" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$(pwd)/$package_json"
}

command -v npm >/dev/null || { log "error: npm is not installed (apt-get install nodejs npm)"; exit 1; }

wanted=("@openai/codex@$CODEX_VERSION" "@anthropic-ai/claude-code@$CLAUDE_VERSION" "opencode-ai@$OPENCODE_VERSION")
missing=()
for spec in "${wanted[@]}"; do
  name="${spec%@*}"
  version="${spec##*@}"
  if [[ "$(installed_version "$name")" != "$version" ]]; then
    missing+=("$spec")
  fi
done

if ((${#missing[@]} > 0)); then
  mkdir -p "$PREFIX"
  log "installing ${missing[*]} into $PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --save-exact "${missing[@]}" >&2
fi

# codex runs the bwrap it finds on PATH with options bubblewrap has had since 0.9
# (`--argv0`); an older one makes every sandboxed command fail. So the package is only
# installed when it is new enough, and an old bwrap on PATH is reported.
BWRAP_MIN="0.9"
bwrap_is_new_enough() { bwrap --help 2>/dev/null | grep -q -- '--argv0'; }
install_bubblewrap() {
  if command -v bwrap >/dev/null; then
    bwrap_is_new_enough && return 0
    log "warning: $(command -v bwrap) ($(bwrap --version 2>/dev/null)) is older than bubblewrap $BWRAP_MIN: codex's sandboxed commands fail with it; remove it or install bubblewrap >= $BWRAP_MIN"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    log "note: bubblewrap is not installed; install bubblewrap >= $BWRAP_MIN with the system's package manager so codex sandboxes with it (until then it uses the copy it bundles)"
    return 0
  fi
  local candidate
  candidate="$(apt-cache policy bubblewrap 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -z "$candidate" || "$candidate" == "(none)" ]] || ! dpkg --compare-versions "$candidate" ge "$BWRAP_MIN"; then
    log "note: the bubblewrap package here (${candidate:-none}) is older than $BWRAP_MIN, which codex needs; codex keeps using the copy it bundles"
    return 0
  fi
  local -a as_root=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      log "note: bubblewrap $candidate is not installed and this user cannot install packages; install it so codex sandboxes with it"
      return 0
    fi
  fi
  log "installing bubblewrap $candidate (codex sandboxes its commands with it)"
  if ! "${as_root[@]}" apt-get install -y --no-install-recommends bubblewrap >&2; then
    log "warning: could not install bubblewrap; codex keeps using the copy it bundles"
  fi
}
install_bubblewrap

for cli in codex claude opencode; do
  [[ -x "$BIN/$cli" ]] || { log "error: $BIN/$cli missing after install"; exit 1; }
done
log "codex $("$BIN/codex" --version 2>/dev/null | head -1); claude $("$BIN/claude" --version 2>/dev/null | head -1); opencode $("$BIN/opencode" --version 2>/dev/null | head -1)"
printf '%s\n' "$(pwd)/$BIN"
