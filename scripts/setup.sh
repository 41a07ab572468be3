#!/usr/bin/env bash
# Host packages for confmux's test sandbox and e2e tests (Debian/Ubuntu, root).
#   debootstrap, zstd, debian-archive-keyring, curl: plugin/asterisk/sandbox/sandbox.sh
#   baresip-core: the headless SIP phone of tests/helpers/baresip.ts
#   ffmpeg: makes and checks the H.264 video of tests/e2e/video.test.ts
#   chromium, fonts-dejavu-core: the headless browser of tests/e2e/browser.test.ts (playwright-core drives it)
#   nginx-light, openssl: a TLS reverse proxy in front of the bridge (browser test), test certificates
#   coturn: its UDP echo peer (turnutils_peer) for `bench --udp-echo` (tests/unit/bench.test.ts) and
#     the relay itself for `bench --coturn`; its own service is not used
#   ansible-core: tests/unit/ansible.test.ts runs the Ansible role (ansible/) against this machine
# Idempotent: installs only what is missing.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "setup.sh: run as root" >&2; exit 1; }
pkgs=(debootstrap zstd debian-archive-keyring curl baresip-core ffmpeg chromium fonts-dejavu-core nginx-light openssl coturn ansible-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then echo "setup.sh: host packages present"; exit 0; fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" || {
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}
# Debian starts nginx with its default site on port 80 when it is installed: the tests run their
# own nginx on loopback, so stop that one.
if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
  service nginx stop >/dev/null 2>&1 || nginx -s quit >/dev/null 2>&1 || true
fi
# coturn's package may start a TURN server; the bench runs its own on loopback when asked
if [[ " ${missing[*]} " == *" coturn "* ]]; then
  service coturn stop >/dev/null 2>&1 || true
fi
