#!/usr/bin/env bash
# Makes sure Node.js >= 20 and npm are on PATH (Debian/Ubuntu, root), and the npm dependencies are
# installed as package-lock.json pins them. Sourced by test.sh and demo.sh.
set -euo pipefail
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node.sh: installing Debian's nodejs and npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q nodejs npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm >/dev/null; }
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if (( major < 20 )); then
  echo "node.sh: confmux needs Node.js 20 or later; this machine has $(node -v)" >&2
  exit 1
fi
# npm ci when node_modules is missing or older than the lock file
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
