/**
 * Soak: a bounded run of terminals placing calls into the sandbox Asterisk's rooms over and over,
 * with paced audio, against a bridge running as its own process (`confmux serve`). Reports calls
 * completed and failed, audio frames expected and received, errors, and the bridge's RSS and open
 * file descriptors at the start and the end, and checks that no channel is left in Asterisk.
 *
 *   node --import tsx soak/soak.ts --terminals 10 --minutes 20 --call-seconds 20
 *
 * Terminals are the sandbox accounts 1001-1250 (sandbox-<number>); it needs `sandbox.sh up` first.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createNodeTerminal } from '../bridge/sdk/node.ts';
import type { TerminalClient } from '../bridge/sdk/TerminalClient.ts';
import { asteriskRx } from '../tests/helpers/sandbox.ts';
import { heapArgs } from '../bin/heapFlags.mjs';
import { mallocArenasEnv } from '../bin/mallocArenas.mjs';

const { values } = parseArgs({
  options: {
    terminals: { type: 'string', default: '10' },
    minutes: { type: 'string', default: '1' },
    'call-seconds': { type: 'string', default: '10' },
    rooms: { type: 'string', default: '700-709' },
  },
});
const terminals = Number(values.terminals);
const minutes = Number(values.minutes);
const callSeconds = Number(values['call-seconds']);
const [roomFrom, roomTo] = values.rooms!.split('-').map(Number) as [number, number];
if (!(terminals >= 1 && terminals <= 250 && minutes > 0 && minutes <= 180 && callSeconds >= 2)) {
  process.stderr.write('usage: --terminals 1..250 (sandbox accounts 1001-1250) --minutes 0..180 --call-seconds >= 2\n');
  process.exit(2);
}

function procStats(pid: number): { rssMb: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  return { rssMb: Math.round(rss * 10) / 10, fds: readdirSync(`/proc/${pid}/fd`).length };
}

const app = `confmux-soak-${process.pid}`;
// every terminal of the soak connects from 127.0.0.1: lift the per-address admission limits
const workDir = mkdtempSync(join(tmpdir(), 'confmux-soak-'));
const configFile = join(workDir, 'confmux.json');
// the bridge's own log (info: every call's start and end, with its id), for a post-mortem
const bridgeLog = join(workDir, 'bridge.log');
const logFile = createWriteStream(bridgeLog);
writeFileSync(configFile, JSON.stringify({ limits: { maxConnectionsPerIp: 100000, maxUnauthenticated: 100000, connectionsPerSecondPerIp: 100000, connectionBurstPerIp: 100000 } }));
// with serve's node options and MALLOC_ARENA_MAX given here, bin/confmux.mjs runs the bridge in this
// child itself (no re-execution, no supervisor): its pid is the bridge's, for the RSS and fds below
const bridge = spawn(process.execPath, [...heapArgs([], process.env.NODE_OPTIONS ?? ''), 'bin/confmux.mjs', 'serve', '--config', configFile], {
  env: { ...mallocArenasEnv(process.env), CONFMUX_HOST: '127.0.0.1', CONFMUX_PORT: '0', CONFMUX_PLAIN: 'true', CONFMUX_ARI_PASSWORD: 'confmux-sandbox', CONFMUX_ARI_APP: app, CONFMUX_LOG_LEVEL: 'info' },
  stdio: ['ignore', 'pipe', 'ignore'],
});
// whatever happens, the bridge this run started goes with it
process.once('exit', () => bridge.kill('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
const port = await new Promise<number>((resolve, reject) => {
  let out: string | null = '';
  const timer = setTimeout(() => reject(new Error('bridge did not start')), 20000);
  bridge.stdout!.on('data', (d: Buffer) => {
    logFile.write(d);
    if (out === null) return;
    out += d.toString();
    const m = /"port":(\d+)/.exec(out);
    if (m) {
      clearTimeout(timer);
      out = null;
      resolve(Number(m[1]));
      return;
    }
    if (out.length > 65536) out = out.slice(-4096);
  });
});
for (let i = 0; i < 50; i++) {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
  if (r?.status === 200) break;
  await new Promise((res) => setTimeout(res, 100));
}
const url = `ws://127.0.0.1:${port}/`;
const start = procStats(bridge.pid!);
const stats = { callsCompleted: 0, callsFailed: 0, failures: {} as Record<string, number>, messages: new Map<string, number>(), framesSent: 0, framesExpected: 0, framesReceived: 0, errors: 0 };
/** call placed -> answered, ms */
const setupMs: number[] = [];
/** a call neither answered nor ended within this is a bug (the bridge bounds every set-up) */
const SETUP_BOUND_MS = 120_000;
const tone = new Uint8Array(640);
for (let i = 0; i < 320; i++) {
  const s = Math.round(6000 * Math.sin((2 * Math.PI * 400 * i) / 16000));
  tone[2 * i] = s & 0xff;
  tone[2 * i + 1] = (s >> 8) & 0xff;
}
const deadline = Date.now() + minutes * 60_000;

async function worker(n: number): Promise<void> {
  const number = String(1001 + n);
  // terminals arrive over a few seconds, not all in the same millisecond
  await new Promise((r) => setTimeout(r, n * 50));
  let t: TerminalClient | null = null;
  let round = 0;
  while (Date.now() < deadline) {
    try {
      if (!t) {
        t = createNodeTerminal({ url, number, password: `sandbox-${number}` });
        t.on('closed', () => (t = null));
        await t.connect();
        await t.register();
      }
      const room = String(roomFrom + ((n + round++) % (roomTo - roomFrom + 1)));
      const placed = Date.now();
      const call = await t.call(room);
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        call.answered(),
        new Promise((_, reject) => {
          bound = setTimeout(() => reject(Object.assign(new Error(`call ${call.id} neither answered nor ended in ${SETUP_BOUND_MS} ms`), { code: 'SETUP_STUCK' })), SETUP_BOUND_MS);
        }),
      ]).finally(() => clearTimeout(bound));
      setupMs.push(Date.now() - placed);
      let received = 0;
      call.on('audio', () => received++);
      const answeredAt = Date.now();
      const timer = setInterval(() => {
        call.sendAudio(tone);
        stats.framesSent++;
      }, 20);
      await Promise.race([new Promise((r) => setTimeout(r, Math.min(callSeconds * 1000, Math.max(0, deadline - Date.now())))), call.ended()]);
      clearInterval(timer);
      // the room sends a participant 50 frames a second while its call is up
      stats.framesExpected += ((Date.now() - answeredAt) / 1000) * 50;
      stats.framesReceived += received;
      const end = call.state === 'ended' ? await call.ended() : await call.hangup();
      if (end.reason === 'normal') stats.callsCompleted++;
      else {
        stats.callsFailed++;
        stats.failures[end.reason] = (stats.failures[end.reason] ?? 0) + 1;
      }
    } catch (err) {
      stats.errors++;
      const code = (err as { code?: string }).code ?? 'ERROR';
      stats.failures[code] = (stats.failures[code] ?? 0) + 1;
      const what = `${code}: ${(err as Error).message.replace(/[A-Za-z0-9_-]{12}/g, '<id>').slice(0, 120)}`;
      stats.messages.set(what, (stats.messages.get(what) ?? 0) + 1);
      // back off, and start afresh: a half-set-up call is ended by the bridge by itself
      t?.close();
      t = null;
      await new Promise((r) => setTimeout(r, 1000 + Math.random() * 1000));
    }
  }
  (t as TerminalClient | null)?.close();
}

function percentiles(v: number[]): { p50: number; p99: number; max: number; n: number } {
  const s = [...v].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? 0, n: s.length };
}

bridge.once('exit', (code, signal) => {
  process.stdout.write(`the bridge exited (${signal ?? code}) before the soak ended: see ${bridgeLog}\n`);
  process.exit(1);
});

const progress = setInterval(() => {
  const now = procStats(bridge.pid!);
  const top = [...stats.messages].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([m, n]) => `${n}x ${m}`);
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] calls ${stats.callsCompleted} ok / ${stats.callsFailed} failed, errors ${stats.errors}, bridge RSS ${now.rssMb} MB, fds ${now.fds}, load ${loadavg()[0]!.toFixed(1)}${top.length ? `\n    ${top.join('\n    ')}` : ''}\n`);
}, 60_000);
await Promise.all(Array.from({ length: terminals }, (_, i) => worker(i)));
clearInterval(progress);
bridge.removeAllListeners('exit');
await new Promise((r) => setTimeout(r, 2000));
const end = procStats(bridge.pid!);
const left = (await asteriskRx('core show channels concise')).split('\n').filter((l) => l.includes(app) || l.includes('!confmux-'));
bridge.kill('SIGTERM');
const lossPct = stats.framesExpected > 0 ? Math.max(0, 100 * (1 - stats.framesReceived / stats.framesExpected)) : 0;
const report = {
  terminals,
  minutes,
  callSeconds,
  callsCompleted: stats.callsCompleted,
  callsFailed: stats.callsFailed,
  failures: stats.failures,
  errors: stats.errors,
  errorMessages: Object.fromEntries([...stats.messages].sort((a, b) => b[1] - a[1]).slice(0, 10)),
  setupMs: percentiles(setupMs),
  framesSent: stats.framesSent,
  framesReceived: stats.framesReceived,
  framesExpected: Math.round(stats.framesExpected),
  receivedShortfallPct: Math.round(lossPct * 100) / 100,
  bridgeStart: start,
  bridgeEnd: end,
  channelsLeft: left.length,
  bridgeLog,
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(left.length === 0 && stats.errors === 0 ? 0 : 1);
