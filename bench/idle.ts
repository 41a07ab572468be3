/**
 * `npm run bench -- --idle N`: what registered terminals cost the bridge when they are in no call.
 * N terminals each open a control connection, bind with the password and register, then stay:
 * the bridge pings every connection each heartbeat interval and closes one that misses a pong
 * (ws clients answer pings by themselves, as browsers do). Measured over the hold window: the
 * bridge's RSS (total, and per terminal above the RSS before any terminal), its V8 heap, its CPU
 * as a fraction of one core, the pings the terminals saw, and any connection that closed.
 *
 * The load generator holds N sockets in this process: its open-files limit (ulimit -n) must allow
 * them; the bridge's is raised to the hard limit when it starts (bench/run.ts startBridge).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { cpuModel, cpuSeconds, rssBytes } from './proc.ts';
import { PASSWORD, bridgeStats, sleep, startBridge, stopBridge, type LoopStats } from './run.ts';
import { cpus } from 'node:os';

export interface IdleOptions {
  terminals: number;
  /** seconds the terminals are held after all have registered (the measured window) */
  seconds: number;
  /** the bridge's heartbeat interval for the run (ms) */
  heartbeatMs: number;
  connectConcurrency?: number;
  timeLimitSeconds?: number;
  /** the bridge's server.workers */
  workers?: number;
  log?: (line: string) => void;
}

export interface IdleResult {
  date: string;
  node: string;
  cpus: number;
  cpuModel: string;
  terminals: number;
  /** terminals bound and registered */
  registered: number;
  connectSeconds: number;
  heartbeatMs: number;
  seconds: number;
  baselineRssBytes: number;
  /** the bridge's node options and MALLOC_ARENA_MAX */
  bridgeRunsWith: string;
  rssBytes: number;
  rssPerTerminalBytes: number;
  heapUsedBytes: number | null;
  externalBytes: number | null;
  /** the bridge's CPU over the hold window, fraction of one core */
  bridgeCpu: number;
  /** pings the terminals received in the window, and how many the interval implies */
  pings: number;
  expectedPings: number;
  unexpectedCloses: number;
  bridgeLoop: LoopStats | null;
}

/** the soft limit on open files of this process */
export function openFilesLimit(): number {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : Infinity;
  } catch {
    return Infinity;
  }
}

/** N idle terminals (control connections only), their pings and closes counted */
class IdleLoad {
  readonly sockets: WebSocket[] = [];
  pings = 0;
  countPings = false;
  unexpectedCloses = 0;
  closing = false;
  private readonly url: string;

  constructor(port: number) {
    this.url = `ws://127.0.0.1:${port}/`;
  }

  /** bind and register one terminal; resolves once `registered` arrives */
  open(index: number, timeoutMs = 20000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const number = String(200000 + index);
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      this.sockets.push(ws);
      const timer = setTimeout(() => reject(new Error(`idle terminal ${number}: not registered after ${timeoutMs} ms`)), timeoutMs);
      ws.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      ws.on('ping', () => {
        if (this.countPings) this.pings++;
      });
      ws.on('close', (code, reason) => {
        if (this.closing) return;
        this.unexpectedCloses++;
        clearTimeout(timer);
        reject(new Error(`idle terminal ${number}: closed ${code} ${reason.toString()}`));
      });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number, password: PASSWORD })));
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString()) as { type: string; code?: string; message?: string };
        if (msg.type === 'bound') ws.send(JSON.stringify({ type: 'register', id: 1, name: `idle ${index}` }));
        else if (msg.type === 'registered') {
          clearTimeout(timer);
          resolve();
        } else if (msg.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`idle terminal ${number}: ${msg.code}: ${msg.message}`));
        }
      });
    });
  }

  closeAll(): void {
    this.closing = true;
    for (const ws of this.sockets) ws.terminate();
  }
}

export async function runIdle(o: IdleOptions): Promise<IdleResult> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const limit = openFilesLimit();
  if (o.terminals + 200 > limit) {
    throw new Error(`--idle ${o.terminals} needs about ${o.terminals + 200} open files in the load generator; this shell allows ${limit}: raise it first (ulimit -n ${o.terminals + 1000})`);
  }
  const bridge = await startBridge({ CONFMUX_BENCH_HEARTBEAT_MS: String(o.heartbeatMs) }, o.workers ?? 1);
  const hardStop = setTimeout(() => {
    log('time limit reached: stopping');
    bridge.child.kill('SIGKILL');
    process.exit(3);
  }, (o.timeLimitSeconds ?? 240) * 1000 + 15000);
  hardStop.unref();
  const load = new IdleLoad(bridge.port);
  try {
    await sleep(300);
    const baseline = rssBytes(bridge.pids);
    const t = performance.now();
    let next = 0;
    let done = 0;
    const progress = setInterval(() => log(`  ${done} of ${o.terminals} terminals registered`), 5000);
    try {
      await Promise.all(
        Array.from({ length: Math.min(o.connectConcurrency ?? 128, o.terminals) }, async () => {
          while (next < o.terminals) {
            await load.open(next++);
            done++;
          }
        }),
      );
    } finally {
      clearInterval(progress);
    }
    const connectSeconds = (performance.now() - t) / 1000;
    log(`${o.terminals} idle terminals registered in ${connectSeconds.toFixed(1)} s; holding them ${o.seconds} s (heartbeat every ${o.heartbeatMs} ms)`);
    // let the set-up's garbage go before the window
    await sleep(1000);
    const cpu0 = cpuSeconds(bridge.pids);
    bridge.child.stdin!.write('reset\n');
    load.countPings = true;
    await sleep(o.seconds * 1000);
    load.countPings = false;
    const cpu1 = cpuSeconds(bridge.pids);
    const rss = rssBytes(bridge.pids);
    const stats = await bridgeStats(bridge);
    return {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpuModel(),
      terminals: o.terminals,
      registered: stats?.terminals !== undefined && stats.terminals >= 0 ? stats.terminals : done,
      connectSeconds,
      heartbeatMs: o.heartbeatMs,
      seconds: o.seconds,
      baselineRssBytes: baseline,
      bridgeRunsWith: bridge.runsWith,
      rssBytes: rss,
      rssPerTerminalBytes: (rss - baseline) / o.terminals,
      heapUsedBytes: stats?.heapUsedBytes ?? null,
      externalBytes: stats?.externalBytes ?? null,
      bridgeCpu: (cpu1 - cpu0) / o.seconds,
      pings: load.pings,
      expectedPings: Math.floor((o.seconds * 1000) / o.heartbeatMs) * o.terminals,
      unexpectedCloses: load.unexpectedCloses,
      bridgeLoop: stats,
    };
  } finally {
    load.closeAll();
    await sleep(200);
    await stopBridge(bridge);
    clearTimeout(hardStop);
  }
}

const mib = (n: number | null): string => (n === null ? '-' : (n / 1048576).toFixed(1));

export function formatIdle(r: IdleResult): string {
  return [
    `confmux bench --idle: ${r.terminals} registered terminals, no call, heartbeat every ${r.heartbeatMs} ms, held ${r.seconds} s`,
    `machine: ${r.cpus} cores, ${r.cpuModel}; node ${r.node}; ${r.date}`,
    `bridge runs with ${r.bridgeRunsWith}`,
    '',
    '| terminals | registered | set-up (s) | bridge RSS before | bridge RSS | RSS/terminal | V8 heap used | external | bridge CPU (core) | pings seen / expected | closed |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| ${r.terminals} | ${r.registered} | ${r.connectSeconds.toFixed(1)} | ${mib(r.baselineRssBytes)} MiB | ${mib(r.rssBytes)} MiB | ${(r.rssPerTerminalBytes / 1024).toFixed(1)} kB | ${mib(r.heapUsedBytes)} MiB | ${mib(r.externalBytes)} MiB | ${r.bridgeCpu.toFixed(3)} | ${r.pings} / ${r.expectedPings} | ${r.unexpectedCloses} |`,
    '',
    'RSS/terminal: (bridge RSS at the end of the window - RSS before any terminal) / terminals. Pings: each terminal is pinged once per heartbeat interval.',
  ].join('\n');
}
