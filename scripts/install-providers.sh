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

for cli in codex claude opencode; do
  [[ -x "$BIN/$cli" ]] || { log "error: $BIN/$cli missing after install"; exit 1; }
done
log "codex $("$BIN/codex" --version 2>/dev/null | head -1); claude $("$BIN/claude" --version 2>/dev/null | head -1); opencode $("$BIN/opencode" --version 2>/dev/null | head -1)"
printf '%s\n' "$(pwd)/$BIN"
