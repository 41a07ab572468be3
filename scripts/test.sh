#!/usr/bin/env bash
# Every test of confmux, from a fresh clone, on Debian/Ubuntu as root: host packages (debootstrap,
# zstd, baresip), Node dependencies, the type check, the Asterisk sandbox (built once, then cached in
# /var/cache/confmux), then unit and end-to-end tests in one node:test run.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "test.sh: run as root (the sandbox is a chroot)" >&2; exit 1; }
bash scripts/setup.sh
source scripts/node.sh
echo "== type check"
npx tsc --noEmit -p .
echo "== Asterisk sandbox"
bash plugin/asterisk/sandbox/sandbox.sh up
echo "== tests"
exec node --import tsx --test --test-concurrency=1 --test-timeout=180000 tests/unit/*.test.ts tests/e2e/*.test.ts
