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
# The native media pump (native/pump.cc; docs/performance.md): built when missing or older than its
# source. It needs g++, make and python3 (node-gyp) and Node's headers; without it the bridge
# relays all audio in JavaScript (server.mediaPump auto), and says so at start.
# The bench's load generator and kernel floor (native/loadgen.cc, native/floor.cc) are built with it.
stale=0
for out in confmux_pump.node confmux_loadgen.node confmux_floor; do
  built=native/build/Release/$out
  if [[ ! -f $built || native/binding.gyp -nt $built ]]; then stale=1; fi
  for src in native/*.cc; do
    if [[ $src -nt $built ]]; then stale=1; fi
  done
done
if ((stale)); then
  if ! command -v g++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    echo "node.sh: installing g++ and make for the native media pump" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++ make python3 >/dev/null 2>&1 || true
  fi
  npm run --silent build:native >/dev/null 2>&1 || echo "node.sh: the native media pump did not build (npm run build:native tells why); audio is relayed in JavaScript" >&2
fi
# The bundle the bridge runs (bridge/dist, `npm run build`, scripts/build.mjs): made again when it
# is missing or any source changed since (bin/bundle.mjs); without it bin/confmux.mjs runs the
# TypeScript sources through tsx.
npm run --silent build -- --if-stale >/dev/null
