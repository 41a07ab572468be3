#!/usr/bin/env bash
# The main job, from a fresh clone on Debian/Ubuntu as root: the Asterisk sandbox up, the bridge up on
# port 8080 (in the background), a first terminal call into room 700 to show it works, and how to join.
#   bash scripts/demo.sh        start (idempotent)
#   bash scripts/demo.sh stop   stop the bridge and the sandbox
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "demo.sh: run as root (the sandbox is a chroot)" >&2; exit 1; }
state=/var/lib/confmux/demo
mkdir -p "$state"
port=${CONFMUX_PORT:-8080}

if [[ ${1:-} == stop ]]; then
  if [[ -f $state/bridge.pid ]] && kill -0 "$(cat "$state/bridge.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$state/bridge.pid")"
    echo "bridge stopped"
  fi
  rm -f "$state/bridge.pid"
  bash plugin/asterisk/sandbox/sandbox.sh down
  exit 0
fi

bash scripts/setup.sh
source scripts/node.sh
bash plugin/asterisk/sandbox/sandbox.sh up

if [[ -f $state/bridge.pid ]] && kill -0 "$(cat "$state/bridge.pid")" 2>/dev/null; then
  echo "bridge already running (pid $(cat "$state/bridge.pid"))"
else
  # the sandbox's ARI password (dialplan/asterisk/ari.conf); use your own for a real PBX.
  # Plain ws:// on loopback for the demo; in production give CONFMUX_TLS_CERT/KEY (or a TLS proxy).
  CONFMUX_ARI_PASSWORD=confmux-sandbox CONFMUX_PORT=$port CONFMUX_PLAIN=true setsid node bin/confmux.mjs serve >"$state/bridge.log" 2>&1 < /dev/null &
  echo $! >"$state/bridge.pid"
  for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "bridge did not come up; log:"; tail -20 "$state/bridge.log"; exit 1; }
  echo "bridge up on port $port (pid $(cat "$state/bridge.pid"), log $state/bridge.log)"
fi
echo "healthz: $(curl -fsS "http://127.0.0.1:$port/healthz")"

echo
echo "== a first call: terminal 1001 sends a 440 Hz tone into room 700 for 4 s and records what it hears"
node bin/confmux.mjs terminal --url "ws://127.0.0.1:$port" --number 1001 --password sandbox-1001 --name "Demo 1001" \
  call 700 --tone 440 --record "$state/heard-1001.wav" --seconds 4

host=$(hostname -I 2>/dev/null | awk '{print $1}')
cat <<MSG

confmux is running. Join room 700 (rooms 700-709, video rooms 710-719, presentation rooms 720-729;
terminals 1001-1010, password sandbox-<number>):

  # in a browser: sign in as 1002 / sandbox-1002 and call 700
  http://127.0.0.1:$port/${host:+   (or http://$host:$port/ from another machine)}

  # a terminal that talks (a WAV, or --tone HZ) and records what it hears
  node bin/confmux.mjs terminal --url ws://127.0.0.1:$port --number 1002 --password sandbox-1002 \\
      call 700 --tone 1000 --record /tmp/heard.wav --seconds 20

  # a SIP phone on 127.0.0.1 can join the same room: sip:700@127.0.0.1 (endpoint "sipphone", no auth)

  # watch it from the Asterisk console
  bash plugin/asterisk/sandbox/sandbox.sh rx "confbridge list 700"

Stop everything: bash scripts/demo.sh stop

Browser terminal: http://127.0.0.1:$port/
MSG
