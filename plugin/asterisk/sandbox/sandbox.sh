#!/usr/bin/env bash
# confmux Asterisk sandbox: a real Asterisk (Debian sid package) in a debootstrap
# chroot on loopback, configured with exactly the files in dialplan/asterisk/.
#
#   sandbox.sh up              build or restore the chroot, copy configs, start Asterisk
#   sandbox.sh down            stop what `up` started, unmount
#   sandbox.sh status          running/stopped + ARI health (exit 0 running, 3 not)
#   sandbox.sh rx "<command>"  asterisk -rx "<command>" inside the chroot
#
# Run as root on a Debian or Ubuntu host. Everything lives in:
#   /var/lib/confmux/sandbox/rootfs      the chroot
#   /var/lib/confmux/sandbox/asterisk.*  pid file, log
#   /var/cache/confmux/                  zstd tarball of the finished rootfs
# The package mirror is read from the host's own apt sources at run time
# (override with CONFMUX_MIRROR=<uri>).
#
# Safety rules this script follows: the chroot gets its own proc and a new
# devpts instance (never bind mounts of host folders); only mounts at or below
# the sandbox root are ever unmounted; a rootfs is removed only after all its
# mounts are gone, with rm --one-file-system; only the pid this script recorded
# is ever signalled.
set -euo pipefail

readonly STATE_DIR=${CONFMUX_SANDBOX_DIR:-/var/lib/confmux/sandbox}
readonly ROOT="$STATE_DIR/rootfs"
readonly CACHE_DIR=${CONFMUX_CACHE_DIR:-/var/cache/confmux}
readonly PID_FILE="$STATE_DIR/asterisk.pid"
readonly LOG_FILE="$STATE_DIR/asterisk.log"
readonly LOCK_FILE="$STATE_DIR/.lock"
readonly SUITE=sid
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
readonly ARCH
# Bump the version whenever the build recipe (build_rootfs) changes: the cache
# key names the tarball, and a rootfs stamped with another key is replaced.
readonly CACHE_KEY="asterisk-${SUITE}-minbase-${ARCH}-v1"
readonly CACHE_FILE="$CACHE_DIR/sandbox-$CACHE_KEY.tar.zst"
readonly STAMP="$ROOT/.confmux-sandbox"

readonly ARI_URL=http://127.0.0.1:8088
readonly ARI_USER=confmux
readonly ARI_PASS=confmux-sandbox
readonly SIP_ADDR=127.0.0.1:5060
readonly START_TIMEOUT=30
CONFIG_CHANGED=0

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../../.." && pwd)
readonly REPO_DIR
readonly CONF_SRC="$REPO_DIR/dialplan/asterisk"

log() { printf '[sandbox] %s\n' "$*" >&2; }
die() { printf '[sandbox] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
elapsed() { local t0=$1; echo "$(( $(now_ms) - t0 ))ms"; }

require_root() { [[ $(id -u) -eq 0 ]] || die "run as root"; }

# ---------------------------------------------------------------- host packages
ensure_host_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
}

# ---------------------------------------------------------------- mirror
# First Debian (not security) archive URI from the host's apt sources,
# deb822 (*.sources) or one-line (sources.list) format.
host_mirror() {
  if [[ -n ${CONFMUX_MIRROR:-} ]]; then echo "$CONFMUX_MIRROR"; return; fi
  local f uri
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk '
      /^[ \t]*$/ { if (uris != "" && types ~ /(^|[ \t])deb([ \t]|$)/ && suites !~ /security/) { print uris; exit } uris = types = suites = ""; next }
      /^#/ { next }
      /^URIs:/   { sub(/^URIs:[ \t]*/, ""); uris = $1 }
      /^Types:/  { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      END { if (uris != "" && types ~ /(^|[ \t])deb([ \t]|$)/ && suites !~ /security/) print uris }
    ' "$f" | grep -v -- '-security' | head -n1)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    uri=$(awk '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) !~ /security/ && $i !~ /security/) { print $i; exit }
      }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  die "no Debian mirror found in /etc/apt/sources.list(.d); set CONFMUX_MIRROR"
}

# On Ubuntu hosts the mirror is an Ubuntu one: Debian sid is not there.
check_mirror_is_debian() {
  local m=$1
  if curl -fsS -o /dev/null --max-time 20 "$m/dists/$SUITE/Release"; then return 0; fi
  die "mirror $m has no dists/$SUITE (Ubuntu host?). Set CONFMUX_MIRROR to a Debian mirror URI."
}

# ---------------------------------------------------------------- mounts
# Mount points at or below $ROOT, deepest first (from /proc/self/mountinfo,
# whose field 5 is the mount point with \040-style escapes).
mounts_under_root() {
  awk -v root="$ROOT" '
    function unesc(s,   out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
          out = out sprintf("%c", (substr(s,i+1,1)*64) + (substr(s,i+2,1)*8) + substr(s,i+3,1)); i += 3
        } else out = out c
      }
      return out
    }
    { mp = unesc($5); if (mp == root || index(mp, root "/") == 1) print length(mp) "\t" mp }
  ' /proc/self/mountinfo | sort -rn | cut -f2-
}

unmount_all() {
  local mp
  local _try
  for _try in 1 2 3; do
    local any=0
    while IFS= read -r mp; do
      [[ -z $mp ]] && continue
      any=1
      # Paranoia: never act on anything outside the sandbox root.
      [[ $mp == "$ROOT" || $mp == "$ROOT"/* ]] || continue
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "could not unmount $mp"
    done < <(mounts_under_root)
    [[ $any -eq 0 ]] && return 0
  done
  [[ -z $(mounts_under_root) ]] || die "mounts remain under $ROOT: $(mounts_under_root | tr '\n' ' ')"
}

is_mounted() { mounts_under_root | grep -qx -- "$1"; }

mount_chroot_fs() {
  mkdir -p "$ROOT/proc" "$ROOT/dev/pts"
  is_mounted "$ROOT/proc" || mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
  is_mounted "$ROOT/dev/pts" ||
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$ROOT/dev/pts"
  # /dev/ptmx must be the new instance's ptmx, not the host's device node.
  if [[ ! -L $ROOT/dev/ptmx ]]; then rm -f "$ROOT/dev/ptmx"; ln -s pts/ptmx "$ROOT/dev/ptmx"; fi
}

remove_rootfs() {
  unmount_all
  [[ -e $ROOT ]] || return 0
  log "removing $ROOT"
  rm -rf --one-file-system -- "$ROOT"
}

# ---------------------------------------------------------------- build / restore
build_rootfs() {
  local mirror t0 t1 keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mirror=$(host_mirror)
  check_mirror_is_debian "$mirror"
  remove_rootfs
  mkdir -p "$ROOT"
  log "debootstrap $SUITE (minbase) from the host's mirror into $ROOT"
  t0=$(now_ms)
  # The host's debian-archive-keyring verifies sid's Release signature as long
  # as the keyring is recent enough (sid is signed with the current stable's
  # and the next release's archive keys). If verification fails we refuse to
  # continue rather than silently fall back to --no-check-gpg: update the
  # host's debian-archive-keyring package (bookworm-updates carries newer
  # keys). Measured: Debian 12's 2023.3+deb12u2 verifies sid (trixie key).
  local gpg_opt=(--keyring="$keyring")
  if [[ ${CONFMUX_NO_CHECK_GPG:-} == 1 ]]; then
    # Last resort, only on explicit request: no signature check at all.
    log "WARNING: CONFMUX_NO_CHECK_GPG=1: the sid Release signature is NOT verified"
    gpg_opt=(--no-check-gpg)
  fi
  if ! debootstrap --variant=minbase --arch="$ARCH" "${gpg_opt[@]}" \
      "$SUITE" "$ROOT" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1; then
    if grep -qiE 'signature|NO_PUBKEY|keyring' "$STATE_DIR/debootstrap.log"; then
      log "the Release signature did not verify with $keyring; update the host's"
      log "debian-archive-keyring, or as a last resort set CONFMUX_NO_CHECK_GPG=1"
    fi
    tail -n 30 "$STATE_DIR/debootstrap.log" >&2
    remove_rootfs
    die "debootstrap failed (log: $STATE_DIR/debootstrap.log)"
  fi
  log "debootstrap done in $(elapsed "$t0")"

  t1=$(now_ms)
  # No service may start inside the chroot while packages are installed.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  # The mirror may be a frozen snapshot whose Release is past its Valid-Until
  # (seen here: "Release file ... is expired"). Signatures are still checked;
  # only the freshness date is ignored.
  printf 'Acquire::Check-Valid-Until "false";\n' >"$ROOT/etc/apt/apt.conf.d/99confmux-no-valid-until"
  mount_chroot_fs
  if ! chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends asterisk asterisk-core-sounds-en-gsm' \
      >"$STATE_DIR/install.log" 2>&1; then
    tail -n 30 "$STATE_DIR/install.log" >&2
    remove_rootfs
    die "installing asterisk in the chroot failed (log: $STATE_DIR/install.log)"
  fi
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get clean >/dev/null
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2016 # ${Version} is dpkg-query's, not the shell's
  log "asterisk $(chroot "$ROOT" dpkg-query -W -f='${Version}' asterisk) installed in $(elapsed "$t1")"
  unmount_all

  # Debian's sample configs go aside once, at build time (the sample
  # extensions.ael alone would load a demo dialplan). asterisk.conf (the
  # directory layout of this build) stays.
  mkdir -p "$ROOT/etc/asterisk/debian-samples"
  find "$ROOT/etc/asterisk" -maxdepth 1 -type f ! -name asterisk.conf \
    -exec mv -t "$ROOT/etc/asterisk/debian-samples/" {} +
  echo "$CACHE_KEY" >"$STAMP"

  t1=$(now_ms)
  mkdir -p "$CACHE_DIR"
  tar -C "$ROOT" --one-file-system --numeric-owner -cf - . | zstd -q -3 -T0 -o "$CACHE_FILE.tmp.$$" -f
  mv -f "$CACHE_FILE.tmp.$$" "$CACHE_FILE"
  log "cached rootfs as $CACHE_FILE ($(du -h "$CACHE_FILE" | cut -f1)) in $(elapsed "$t1")"
}

restore_rootfs() {
  local t0
  t0=$(now_ms)
  remove_rootfs
  mkdir -p "$ROOT"
  if ! zstd -q -dc "$CACHE_FILE" | tar -C "$ROOT" --numeric-owner -xpf -; then
    remove_rootfs
    log "cache $CACHE_FILE is unreadable; removing it"
    rm -f "$CACHE_FILE"
    return 1
  fi
  log "restored rootfs from $CACHE_FILE in $(elapsed "$t0")"
}

ensure_rootfs() {
  if [[ -f $STAMP && $(cat "$STAMP") == "$CACHE_KEY" && -x $ROOT/usr/sbin/asterisk ]]; then
    return 0
  fi
  if [[ -f $CACHE_FILE ]] && restore_rootfs && [[ -f $STAMP ]]; then return 0; fi
  build_rootfs
}

# ---------------------------------------------------------------- configs
install_configs() {
  [[ -d $CONF_SRC ]] || die "config source $CONF_SRC not found"
  local etc="$ROOT/etc/asterisk" f
  mkdir -p "$etc"
  # Configs from an earlier `up` that are no longer in the repo go away too,
  # so the sandbox uses exactly dialplan/asterisk/*.conf (+ asterisk.conf).
  CONFIG_CHANGED=0
  for f in "$etc"/*.conf; do
    [[ -e $f ]] || continue
    [[ $(basename "$f") == asterisk.conf || $(basename "$f") == pjsip_soak.conf ]] && continue
    if [[ ! -e $CONF_SRC/$(basename "$f") ]]; then rm -f "$f"; CONFIG_CHANGED=1; fi
  done
  for f in "$CONF_SRC"/*.conf; do
    if ! cmp -s "$f" "$etc/$(basename "$f")"; then
      cp -f "$f" "$etc/"
      CONFIG_CHANGED=1
    fi
  done
  # Sandbox only: more terminal accounts (1011-1250, password sandbox-<n>) for the soak run,
  # pulled in by pjsip.conf's #tryinclude; an operator's Asterisk has no such file.
  local soak
  soak=$(for n in $(seq 1011 1250); do
    printf '[%s](confmux-terminal-endpoint)\nauth = %s\naors = %s\n[%s](confmux-terminal-aor)\n[%s](confmux-terminal-auth)\nusername = %s\npassword = sandbox-%s\n' "$n" "$n" "$n" "$n" "$n" "$n" "$n"
  done)
  if [[ "$(cat "$etc/pjsip_soak.conf" 2>/dev/null)" != "$soak" ]]; then
    printf '%s\n' "$soak" >"$etc/pjsip_soak.conf"
    CONFIG_CHANGED=1
  fi
  mkdir -p "$ROOT/run/asterisk" "$ROOT/var/log/asterisk" "$ROOT/var/spool/asterisk" "$ROOT/var/lib/asterisk"
  # Asterisk looks up its own host name (ast_find_ourip); without an entry it
  # logs getaddrinfo errors and tries DNS. Resolve it to loopback.
  local host
  host=$(hostname 2>/dev/null || echo localhost)
  printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$host" >"$ROOT/etc/hosts"
}

# ---------------------------------------------------------------- process
recorded_pid() { if [[ -f $PID_FILE ]]; then cat "$PID_FILE"; fi; }

# True if $1 is a live Asterisk whose root is our chroot (not a recycled pid).
is_our_asterisk() {
  local pid=$1
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == asterisk ]] || return 1
  [[ $(readlink "/proc/$pid/root" 2>/dev/null) == "$(readlink -f "$ROOT")" ]] || return 1
}

is_running() { is_our_asterisk "$(recorded_pid)"; }

# An Asterisk in our chroot whose pid file we lost (e.g. state dir edited):
# take over the pid Asterisk itself wrote, if it really is ours.
adopt_running() {
  local pid
  pid=$(cat "$ROOT/run/asterisk/asterisk.pid" 2>/dev/null || true)
  if is_our_asterisk "$pid"; then
    echo "$pid" >"$PID_FILE"
    log "adopted running asterisk (pid $pid)"
    return 0
  fi
  return 1
}

ari_healthy() {
  curl -fsS -o /dev/null --max-time 3 -u "$ARI_USER:$ARI_PASS" "$ARI_URL/ari/asterisk/info" 2>/dev/null
}

rx() {
  chroot "$ROOT" /usr/sbin/asterisk -rx "$1"
}

start_asterisk() {
  local pid t0 deadline
  mount_chroot_fs
  rm -f "$ROOT/run/asterisk/asterisk.ctl" "$ROOT/run/asterisk/asterisk.pid"
  : >"$LOG_FILE"
  t0=$(now_ms)
  # setsid: its own session, so it survives the shell (and test runner) that
  # started it; all fds point away from our caller's pipes.
  setsid chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /usr/sbin/asterisk -f -vvv </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  deadline=$(( $(now_ms) + START_TIMEOUT * 1000 ))
  until ari_healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      unmount_all
      die "asterisk exited during start (log: $LOG_FILE)"
    fi
    if (( $(now_ms) > deadline )); then
      tail -n 40 "$LOG_FILE" >&2
      die "ARI did not answer within ${START_TIMEOUT}s (log: $LOG_FILE); run 'sandbox.sh down' to clean up"
    fi
    sleep 0.1
  done
  is_our_asterisk "$pid" || die "pid $pid is not the chroot's asterisk"
  log "asterisk started (pid $pid), ARI ready in $(elapsed "$t0")"
}

stop_asterisk() {
  local pid _i
  pid=$(recorded_pid)
  if is_our_asterisk "$pid"; then
    rx "core stop now" >/dev/null 2>&1 || true
    for _i in $(seq 1 50); do is_our_asterisk "$pid" || break; sleep 0.1; done
    if is_our_asterisk "$pid"; then
      log "asterisk $pid still alive after 'core stop now'; sending TERM"
      kill -TERM "$pid" 2>/dev/null || true
      for _i in $(seq 1 30); do is_our_asterisk "$pid" || break; sleep 0.1; done
    fi
    if is_our_asterisk "$pid"; then
      log "sending KILL to $pid"
      kill -KILL "$pid" 2>/dev/null || true
      for _i in $(seq 1 20); do is_our_asterisk "$pid" || break; sleep 0.1; done
    fi
    log "asterisk $pid stopped"
  fi
  rm -f "$PID_FILE"
}

print_info() {
  cat <<EOF
confmux Asterisk sandbox is running
  Asterisk : $(rx 'core show version' 2>/dev/null | head -n1)
  pid      : $(recorded_pid)
  ARI      : $ARI_URL  (user $ARI_USER, password $ARI_PASS)
  events   : ws://127.0.0.1:8088/ari/events?app=<APP>&api_key=$ARI_USER:$ARI_PASS
  SIP      : udp $SIP_ADDR  (terminals 1001..1010 / sandbox-<n>; sipphone without auth)
  rooms    : 700..709 in context confmux-rooms
  log      : $LOG_FILE
  rootfs   : $ROOT
EOF
}

# ---------------------------------------------------------------- commands
cmd_up() {
  require_root
  ensure_host_packages debootstrap zstd debian-archive-keyring curl
  if is_running || adopt_running; then
    install_configs
    local what="configs unchanged"
    if [[ $CONFIG_CHANGED == 1 ]]; then
      # Reloads every module's config (dialplan, pjsip, confbridge, ari...).
      # http.conf bind changes and modules.conf need `down` + `up`.
      rx "core reload" >/dev/null || log "core reload failed"
      what="configs changed: copied and 'core reload' done"
    fi
    if ari_healthy; then
      echo "already running and healthy ($what)"
      print_info
      return 0
    fi
    log "asterisk runs but ARI does not answer; restarting"
    stop_asterisk
  fi
  rm -f "$PID_FILE"
  # Leftovers of a killed session: mounts (and maybe a stale socket).
  unmount_all
  ensure_rootfs
  install_configs
  start_asterisk
  print_info
}

cmd_down() {
  require_root
  is_running || adopt_running || true
  stop_asterisk
  unmount_all
  echo "stopped"
}

cmd_status() {
  if is_running || adopt_running 2>/dev/null; then
    if ari_healthy; then
      echo "running (pid $(recorded_pid)); ARI $ARI_URL healthy"
    else
      echo "running (pid $(recorded_pid)); ARI $ARI_URL NOT answering"
    fi
    return 0
  fi
  echo "stopped"
  return 3
}

cmd_rx() {
  [[ $# -ge 1 ]] || die "usage: sandbox.sh rx \"<cli command>\""
  is_running || adopt_running 2>/dev/null || { echo "sandbox is not running" >&2; return 3; }
  rx "$*"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up|down)
      mkdir -p "$STATE_DIR"
      # One up/down at a time (test files may call `up` in parallel).
      exec 9>"$LOCK_FILE"
      flock 9
      "cmd_$cmd" "$@"
      ;;
    status) cmd_status "$@" ;;
    rx) cmd_rx "$@" ;;
    *) echo "usage: $0 up|down|status|rx \"<cli command>\"" >&2; exit 2 ;;
  esac
}

main "$@"
