/**
 * The bridge under benchmark, run as its own process by bench/run.ts so that its CPU time and
 * RSS can be read from /proc/<pid>. Its PBX side is the echo stand-in (plugin/echo/EchoDriver.ts):
 * no media server is involved, so what the load costs here is the bridge's own work.
 *
 * Listens on 127.0.0.1, port 0; prints one JSON line {"port":N} on stdout when ready. Exits when
 * its stdin closes (the benchmark ended or died) or on SIGTERM / SIGINT.
 *
 * Lines on stdin: "reset" starts a measurement window, "stats" answers with one JSON line: the
 * event-loop delay (p50, p99, max, ms) and utilisation since the last reset. A frame that arrives
 * while the loop is busy waits that long: the delay is the bridge's share of the latency tail.
 *
 * CONFMUX_BENCH_WORKERS=N (N > 1): server.workers = N. This process is then the primary (the
 * UpgradeRouter on the port) and forks N workers, each this same script with the echo stand-in;
 * the JSON line lists every pid ("pids") so that the load generator sums their CPU and RSS. The
 * event-loop figures are then the primary's only; the native pump's figures (pumped calls, wake-ups,
 * relay-added latency) are each worker's, asked over the worker's IPC channel and combined: counts
 * summed, each latency figure the worse of the workers'.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { loadConfig } from '../bridge/config.ts';
import { createLogger } from '../bridge/logger.ts';
import { fileURLToPath } from 'node:url';
import { BridgeServer } from '../bridge/server/BridgeServer.ts';
import { loadNativePump, relayLatency } from '../bridge/server/MediaPump.ts';
import type { RelayLatencySummary } from '../bridge/server/metrics.ts';
import { PUMP_STAT } from '../bridge/server/PumpedAudio.ts';
import { UpgradeRouter } from '../bridge/server/UpgradeRouter.ts';
import { WorkerLink, ownsNumber, workerIdentity } from '../bridge/server/WorkerLink.ts';
import { WorkerPool } from '../bridge/server/WorkerPool.ts';
import { EchoDriver } from '../plugin/echo/EchoDriver.ts';

const password = process.env.CONFMUX_BENCH_PASSWORD ?? 'bench';
// --udp-echo: the echo stand-in relays every payload through this UDP echo peer (host:port)
const udpPeerEnv = process.env.CONFMUX_BENCH_UDP_PEER;
const udpPeer = udpPeerEnv ? { host: udpPeerEnv.split(':')[0]!, port: Number(udpPeerEnv.split(':')[1]) } : undefined;
// --ws-echo: the echo stand-in relays every payload over a WebSocket media leg to this peer (ws://host:port)
const wsPeer = process.env.CONFMUX_BENCH_WS_PEER || undefined;
const config = loadConfig({
  env: {},
  overrides: {
    server: { host: '127.0.0.1', port: 0, plain: true, workers: Number(process.env.CONFMUX_BENCH_WORKERS ?? '1'), mediaPump: (process.env.CONFMUX_BENCH_MEDIA_PUMP ?? 'auto') as 'auto' | 'on' | 'off', mediaPumpPriority: (process.env.CONFMUX_BENCH_MEDIA_PUMP_PRIORITY ?? 'realtime') as 'realtime' | 'normal', mediaPumpCoalesceUs: Number(process.env.CONFMUX_BENCH_MEDIA_PUMP_COALESCE_US ?? '200'), mediaPumpStaleMs: Number(process.env.CONFMUX_BENCH_MEDIA_PUMP_STALE_MS ?? '100') },
    // never used: the echo stand-in replaces the Asterisk driver, but the schema wants a password
    asterisk: { password: 'unused-by-the-echo-stand-in' },
    log: { level: process.env.CONFMUX_BENCH_LOG ?? 'silent' },
    // the load generator opens every terminal from 127.0.0.1: lift the per-address admission limits
    limits: {
      // (CONFMUX_BENCH_MAX_CONNECTIONS_PER_IP: a test of the limit with workers sets it back)
      maxConnectionsPerIp: Number(process.env.CONFMUX_BENCH_MAX_CONNECTIONS_PER_IP ?? 1_000_000),
      maxUnauthenticated: 1_000_000,
      connectionsPerSecondPerIp: 1_000_000,
      connectionBurstPerIp: 1_000_000,
      // idle mode pings more often than the default 15 s, to see heartbeats within its window
      ...(process.env.CONFMUX_BENCH_HEARTBEAT_MS ? { heartbeatIntervalMs: Number(process.env.CONFMUX_BENCH_HEARTBEAT_MS) } : {}),
    },
  },
});
const log = createLogger(config.log.level);
const worker = workerIdentity();

/** IPC message type between the primary and its workers for the pump figures */
const BENCH_PUMP = 'confmux:bench-pump';

interface PumpFigures {
  pumped: number | undefined;
  pumpWakeups: number;
  pumpEvents: number;
  pumpPriority: string | null | undefined;
  pumpLatencyUs: ReturnType<typeof relayLatency> | undefined;
}

/** This process's native pump, counted from the last reset(). */
function pumpWindow(server: BridgeServer | null): { reset(): void; figures(): PumpFigures } {
  const native = loadNativePump();
  const counts = (): number[] => ('pump' in native ? native.pump.stats() : []);
  let atReset = counts();
  const since = (i: number): number => (counts()[i] ?? 0) - (atReset[i] ?? 0);
  return {
    reset(): void {
      atReset = counts();
      if ('pump' in native) native.pump.latency(true);
    },
    figures: (): PumpFigures => ({
      pumped: server?.pumpedCalls,
      pumpWakeups: since(PUMP_STAT.wakeups),
      pumpEvents: since(PUMP_STAT.events),
      pumpPriority: server?.pumpPriority,
      pumpLatencyUs: 'pump' in native ? relayLatency(native.pump.latency(false)) : undefined,
    }),
  };
}

/** The workers' figures as one: counts summed, each latency figure the worse of the workers'. */
function combine(all: PumpFigures[]): PumpFigures {
  const lat = all.map((f) => f.pumpLatencyUs).filter((l): l is NonNullable<typeof l> => l !== undefined);
  const worse = (dir: 'up' | 'down'): RelayLatencySummary => {
    const live = lat.map((l) => l[dir]).filter((x) => x.count > 0);
    const max = (k: 'p50' | 'p99' | 'p999' | 'max'): number => live.reduce((m, x) => Math.max(m, x[k]), 0);
    return { p50: max('p50'), p99: max('p99'), p999: max('p999'), max: max('max'), count: live.reduce((n, x) => n + x.count, 0) };
  };
  return {
    pumped: all.reduce((n, f) => n + (f.pumped ?? 0), 0),
    pumpWakeups: all.reduce((n, f) => n + f.pumpWakeups, 0),
    pumpEvents: all.reduce((n, f) => n + f.pumpEvents, 0),
    pumpPriority: all[0]?.pumpPriority,
    pumpLatencyUs: lat.length > 0 ? { up: worse('up'), down: worse('down') } : undefined,
  };
}

if (worker) {
  // a worker behind the primary: no port, no stdin; the primary stops it with SIGTERM
  const driver = new EchoDriver({ password, udpPeer, wsPeer });
  await driver.start();
  const server = new BridgeServer(config, driver, log, { owns: ownsNumber(worker.index, worker.count) });
  const link = new WorkerLink(server);
  link.start();
  const window = pumpWindow(server);
  process.on('message', (m: unknown) => {
    const msg = m as { type?: string; id?: number; op?: string } | null;
    if (msg?.type !== BENCH_PUMP) return;
    if (msg.op === 'reset') window.reset();
    process.send!({ type: BENCH_PUMP, id: msg.id, ...(msg.op === 'stats' ? window.figures() : {}) });
  });
  const stop = (): void => {
    link.close();
    void server
      .close()
      .then(() => driver.close())
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
} else {
  await main();
}

async function main(): Promise<void> {
  let server: { close(): Promise<void>; terminalCount: number };
  let pool: WorkerPool | null = null;
  let closeDriver = (): Promise<void> => Promise.resolve();
  let pids = [process.pid];
  let port: number;
  if (config.server.workers > 1) {
    let router: UpgradeRouter | null = null;
    pool = new WorkerPool({
      script: fileURLToPath(import.meta.url),
      count: config.server.workers,
      execArgv: process.execArgv,
      env: { CONFMUX_BENCH_PASSWORD: password, ...(udpPeerEnv ? { CONFMUX_BENCH_UDP_PEER: udpPeerEnv } : {}), ...(wsPeer ? { CONFMUX_BENCH_WS_PEER: wsPeer } : {}) },
      log,
      // the per-address limits, counted over all workers (PrimaryAdmission)
      primary: () => router,
    });
    await pool.start();
    const workers = pool;
    router = new UpgradeRouter(config, config.server.workers, (k, socket, handoff) => workers.handOff(k, socket, handoff), { metrics: () => workers.metrics(), health: () => workers.health('echo') });
    port = (await router.listen()).port;
    pids = [process.pid, ...workers.pids];
    server = {
      close: () => router.close().then(() => workers.stop()),
      terminalCount: -1,
    };
  } else {
    const driver = new EchoDriver({ password, udpPeer, wsPeer });
    await driver.start();
    const bridge = new BridgeServer(config, driver, log);
    port = (await bridge.listen()).port;
    server = bridge;
    closeDriver = () => driver.close();
  }
  process.stdout.write(`${JSON.stringify({ port, pid: process.pid, pids })}\n`);

  let stopping = false;
  async function stop(): Promise<void> {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    await server.close();
    await closeDriver();
    process.exit(0);
  }
  // 1 ms resolution: the delay histogram's own timer wakes the loop 1000 times a second (cheap next
  // to the load; the same in every run)
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let elu = performance.eventLoopUtilization();
  // the native media pump's calls, wake-ups, events and latency in the window: this process's, or
  // with workers theirs
  const window = pumpWindow(server instanceof BridgeServer ? server : null);
  const workers = pool;
  const pumpReset = async (): Promise<void> => {
    if (workers) await workers.ask(BENCH_PUMP, { op: 'reset' });
    else window.reset();
  };
  const pumpFigures = async (): Promise<PumpFigures> => (workers ? combine((await workers.ask(BENCH_PUMP, { op: 'stats' })) as PumpFigures[]) : window.figures());
  // one command at a time, in order (a reset must land before the stats that follow it)
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on('line', (line) => {
    queue = queue.then(async () => {
      if (line === 'reset') {
        delay.reset();
        elu = performance.eventLoopUtilization();
        await pumpReset();
      } else if (line === 'stats') {
        const ms = (ns: number): number => ns / 1e6;
        const u = performance.eventLoopUtilization(elu);
        const mem = process.memoryUsage();
        const pump = await pumpFigures();
        process.stdout.write(`${JSON.stringify({ loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) }, loopUtilization: u.utilization, heapUsedBytes: mem.heapUsed, externalBytes: mem.external, terminals: server.terminalCount, ...pump })}\n`);
      }
    });
  });
  process.stdin.on('end', () => void stop());
  process.stdin.on('error', () => void stop());
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}
