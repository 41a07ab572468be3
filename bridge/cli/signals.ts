/**
 * SIGTERM and SIGINT for `confmux serve`, each delivered exactly once.
 *
 * bin/confmux.mjs starts the bridge with node options that must be given at process start (V8's
 * heap options, bin/heapFlags.mjs). Where node has process.execve it re-executes
 * itself in place and nothing changes here. Where it has not (Node 20) the bridge runs as a child
 * that bin/confmux.mjs supervises (CONFMUX_SUPERVISED=1, with an IPC channel): a signal sent to
 * the process group (Ctrl-C in a terminal) or to the whole cgroup (systemd's default) reaches both
 * processes, one sent to the main pid (docker stop, kill <pid>) reaches the supervisor only. So
 * the supervisor relays every SIGTERM and SIGINT it gets over IPC, and the bridge ignores its own
 * copies: a second signal still means "exit now", a duplicate delivery of one does not. If the
 * supervisor dies (SIGKILL, the OOM killer), the bridge ends at once as if it had been killed
 * itself: no process is left behind holding the port and the media server's application.
 */

export type StopSignal = 'SIGTERM' | 'SIGINT';

/** the IPC message of the supervisor in bin/confmux.mjs */
interface RelayedSignal {
  type: 'confmux:signal';
  signal: StopSignal;
}

// read once, and not passed on to processes this one starts (workers)
const supervised = process.env.CONFMUX_SUPERVISED === '1' && typeof process.send === 'function';
delete process.env.CONFMUX_SUPERVISED;

/** Calls `stop` on each SIGTERM and SIGINT this process is meant to act on. */
export function onStopSignals(stop: (signal: StopSignal) => void): void {
  if (!supervised) {
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    return;
  }
  // handled (not the default: terminate), and left to the supervisor's relay
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('message', (m: unknown) => {
    const r = m as Partial<RelayedSignal> | null;
    if (r?.type === 'confmux:signal' && (r.signal === 'SIGTERM' || r.signal === 'SIGINT')) stop(r.signal);
  });
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
}
