/**
 * The kernel's floor (native/floor.cc, built by `npm run build:native` as confmux_floor): what this
 * machine's kernel alone charges per relayed message for the socket calls every relay makes, with no
 * relay code and nobody woken. `npm run bench:floor` prints it; `npm run bench -- --floor` measures it
 * just before and just after the run, with the same stream count and rate on the same CPUs, and
 * prints the bridge's CPU per message against it (docs/performance.md, "Fifth round"). The
 * machine's state moves both by a third within an hour; their ratio moves much less.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const FLOOR_PATH = fileURLToPath(new URL('../native/build/Release/confmux_floor', import.meta.url));

export interface FloorTransport {
  bytes: number;
  /** messages sent both ways together, and received */
  sent: number;
  received: number;
  /** each end's CPU seconds (sleeps left out) */
  cpuA: number;
  cpuB: number;
  /** µs of CPU per message: one send with its loopback delivery, one receive */
  usPerMessage: number;
}

export interface KernelFloor {
  streams: number;
  /** messages a second each way */
  rate: number;
  seconds: number;
  cpuA: number;
  cpuB: number;
  tickUs: number;
  /** UDP sent with sendmmsg from one unconnected socket per end (--udp-sendmmsg) */
  udpSendmmsg: boolean;
  udp: FloorTransport;
  tcp: FloorTransport;
  /** (UDP's + TCP's µs per message) / 2: a relayed message pays a receive on one and a send on the other */
  floorUsPerRelayedMessage: number;
  /** the same with each end's wake-up every tick counted (a relay coalescing as the pump does pays them) */
  withWakeupsUsPerRelayedMessage: number;
}

export interface FloorOptions {
  streams: number;
  /** messages a second each way (default: 50 per stream) */
  rate?: number;
  seconds?: number;
  /** the two ends' CPUs (-1: not pinned) */
  cpuA?: number;
  cpuB?: number;
  tickUs?: number;
  udpBytes?: number;
  tcpBytes?: number;
  udpSendmmsg?: boolean;
}

/** Runs confmux_floor; rejects with a clear message when it is not built or fails. */
export function measureFloor(o: FloorOptions): Promise<KernelFloor> {
  if (!existsSync(FLOOR_PATH)) return Promise.reject(new Error(`${FLOOR_PATH} is not built: npm run build:native`));
  const args = ['--json', '--streams', String(o.streams), '--rate', String(o.rate ?? o.streams * 50), '--seconds', String(o.seconds ?? 3), '--cpu-a', String(o.cpuA ?? -1), '--cpu-b', String(o.cpuB ?? -1)];
  if (o.tickUs !== undefined) args.push('--tick-us', String(o.tickUs));
  if (o.udpBytes !== undefined) args.push('--udp-bytes', String(o.udpBytes));
  if (o.tcpBytes !== undefined) args.push('--tcp-bytes', String(o.tcpBytes));
  if (o.udpSendmmsg) args.push('--udp-sendmmsg');
  return new Promise((resolve, reject) => {
    execFile(FLOOR_PATH, args, { timeout: ((o.seconds ?? 3) * 2 + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`confmux_floor failed: ${stderr.trim() || err.message}`));
      else resolve(JSON.parse(stdout) as KernelFloor);
    });
  });
}

const floorLine = (when: string, f: KernelFloor): string =>
  `kernel floor ${when}: TCP ${f.tcp.usPerMessage.toFixed(2)} µs and UDP ${f.udp.usPerMessage.toFixed(2)} µs per message (a send with its delivery, and a receive), ${f.floorUsPerRelayedMessage.toFixed(2)} µs per relayed message (${f.withWakeupsUsPerRelayedMessage.toFixed(2)} with a wake-up every ${f.tickUs} µs)`;

/** The floor measured before (and after) a run, and the bridge's µs per relayed message against their mean. */
export function formatFloor(before: KernelFloor, after?: KernelFloor, bridgeUsPerMessage?: number): string {
  const lines = [
    `kernel floor (native/floor.cc: ${before.streams} loopback pairs each of TCP and UDP, ${before.rate} messages a second each way, the ends on CPU ${before.cpuA} and CPU ${before.cpuB}, no relay code, nobody woken):`,
    floorLine('before the run', before),
    ...(after ? [floorLine('after the run', after)] : []),
  ];
  const mean = (k: 'floorUsPerRelayedMessage' | 'withWakeupsUsPerRelayedMessage'): number => (after ? (before[k] + after[k]) / 2 : before[k]);
  const floor = mean('floorUsPerRelayedMessage');
  const withWakeups = mean('withWakeupsUsPerRelayedMessage');
  if (bridgeUsPerMessage !== undefined && floor > 0) {
    lines.push(
      `the bridge against the floor: ${bridgeUsPerMessage.toFixed(2)} µs per relayed message = ${(bridgeUsPerMessage / floor).toFixed(2)} × the kernel's floor${after ? ' (the mean of before and after)' : ''}, ${(bridgeUsPerMessage / withWakeups).toFixed(2)} × the floor with its wake-ups`,
    );
  }
  return lines.join('\n');
}
