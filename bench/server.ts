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
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { loadConfig } from '../bridge/config.ts';
import { createLogger } from '../bridge/logger.ts';
import { BridgeServer } from '../bridge/server/BridgeServer.ts';
import { EchoDriver } from '../plugin/echo/EchoDriver.ts';

const password = process.env.CONFMUX_BENCH_PASSWORD ?? 'bench';
const config = loadConfig({
  env: {},
  overrides: {
    server: { host: '127.0.0.1', port: 0 },
    // never used: the echo stand-in replaces the Asterisk driver, but the schema wants a password
    asterisk: { password: 'unused-by-the-echo-stand-in' },
    log: { level: process.env.CONFMUX_BENCH_LOG ?? 'silent' },
    // the load generator opens every terminal from 127.0.0.1: lift the per-address admission limits
    limits: {
      maxConnectionsPerIp: 1_000_000,
      maxUnauthenticated: 1_000_000,
      connectionsPerSecondPerIp: 1_000_000,
      connectionBurstPerIp: 1_000_000,
      // idle mode pings more often than the default 15 s, to see heartbeats within its window
      ...(process.env.CONFMUX_BENCH_HEARTBEAT_MS ? { heartbeatIntervalMs: Number(process.env.CONFMUX_BENCH_HEARTBEAT_MS) } : {}),
    },
  },
});
const log = createLogger(config.log.level);
const driver = new EchoDriver({ password });
await driver.start();
const server = new BridgeServer(config, driver, log);
const address = await server.listen();
process.stdout.write(`${JSON.stringify({ port: address.port, pid: process.pid })}\n`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(0), 3000);
  force.unref();
  await server.close();
  await driver.close();
  process.exit(0);
}
// 1 ms resolution: the delay histogram's own timer wakes the loop 1000 times a second (cheap next
// to the load; the same in every run)
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
let elu = performance.eventLoopUtilization();
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'reset') {
    delay.reset();
    elu = performance.eventLoopUtilization();
  } else if (line === 'stats') {
    const ms = (ns: number): number => ns / 1e6;
    const u = performance.eventLoopUtilization(elu);
    const mem = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) }, loopUtilization: u.utilization, heapUsedBytes: mem.heapUsed, externalBytes: mem.external, terminals: server.terminalCount })}\n`);
  }
});
process.stdin.on('end', () => void stop());
process.stdin.on('error', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
