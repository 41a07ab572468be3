/**
 * `npm run bench:profile -- [--streams N] [--seconds S]`: where the native media pump's CPU goes.
 * Runs the bench (`--udp-echo`, so that TCP is the terminals' side and UDP the media server's),
 * samples every CPU with `perf record -g` (Debian: linux-perf) while the load runs, and sorts the
 * relay thread's samples (`confmux-pump`) by what the thread was doing: each socket call, the wait
 * for events, its own code. A sample inside `net_rx_action` is the loopback delivery of a packet the
 * thread sent, i.e. the receiving process's network stack run on the sender's CPU time.
 * See docs/performance.md "Where the relay's CPU goes".
 */
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

/** What a sample of the relay thread was doing, in the order they are printed. */
export const CATEGORIES = [
  'TCP send (to the terminals)',
  'UDP send (to the media server)',
  'TCP receive (from the terminals)',
  'UDP receive (from the media server)',
  'waiting for events (epoll_wait, sleeping, waking)',
  'other system calls and kernel work',
  'the pump\'s own code and libc (user space)',
] as const;
export type Category = (typeof CATEGORIES)[number];

/** One sample: its thread's name and its stack, innermost frame first (symbol names only). */
export interface Sample {
  comm: string;
  stack: string[];
  kernel: boolean[];
}

/** Parses `perf script -F comm,ip,sym` output. */
export function parsePerfScript(text: string): Sample[] {
  const samples: Sample[] = [];
  let cur: Sample | null = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) {
      cur = { comm: line.trim(), stack: [], kernel: [] };
      samples.push(cur);
      continue;
    }
    if (cur === null) continue;
    const m = /^\s+([0-9a-f]+)\s+(\S+)/.exec(line);
    if (m === null) continue;
    cur.stack.push(m[2]!.replace(/\+0x[0-9a-f]+$/, ''));
    cur.kernel.push(m[1]!.length === 16 && m[1]!.startsWith('ffff'));
  }
  return samples;
}

/** Sorts a relay-thread sample; `loopback`: it is inside the delivery of a sent packet. */
export function classify(s: Sample): { category: Category; loopback: boolean } {
  const frames = new Set(s.stack);
  const loopback = frames.has('net_rx_action');
  let category: Category;
  if (frames.has('tcp_sendmsg')) category = 'TCP send (to the terminals)';
  else if (frames.has('udp_sendmsg')) category = 'UDP send (to the media server)';
  else if (frames.has('tcp_recvmsg') || frames.has('tcp_recvmsg_locked')) category = 'TCP receive (from the terminals)';
  else if (frames.has('udp_recvmsg')) category = 'UDP receive (from the media server)';
  else if (frames.has('do_epoll_wait') || frames.has('__x64_sys_epoll_wait')) category = 'waiting for events (epoll_wait, sleeping, waking)';
  else if (s.kernel.some(Boolean)) category = 'other system calls and kernel work';
  else category = 'the pump\'s own code and libc (user space)';
  return { category, loopback };
}

export interface Breakdown {
  samples: number;
  rows: { category: Category; share: number; loopbackShare: number }[];
}

/** The relay thread's samples (`comm`) by category, as shares of its samples. */
export function breakdown(samples: readonly Sample[], comm = 'confmux-pump'): Breakdown {
  const mine = samples.filter((s) => s.comm === comm);
  const count = new Map<Category, { n: number; loopback: number }>(CATEGORIES.map((c) => [c, { n: 0, loopback: 0 }]));
  for (const s of mine) {
    const { category, loopback } = classify(s);
    const c = count.get(category)!;
    c.n++;
    if (loopback) c.loopback++;
  }
  const total = mine.length || 1;
  return {
    samples: mine.length,
    rows: CATEGORIES.map((category) => ({ category, share: count.get(category)!.n / total, loopbackShare: count.get(category)!.loopback / total })),
  };
}

/** The table printed, with µs per relayed message when the bench's figure is known. */
export function formatBreakdown(b: Breakdown, usPerMessage: number | null): string {
  const us = (share: number): string => (usPerMessage === null ? '-' : (share * usPerMessage).toFixed(2));
  const lines = [
    `relay thread samples: ${b.samples}`,
    '',
    '| what the relay thread was doing | share of its CPU | µs per message | of which the receiver\'s delivery on loopback (share) |',
    '|---|---:|---:|---:|',
  ];
  for (const r of b.rows) lines.push(`| ${r.category} | ${(100 * r.share).toFixed(1)} % | ${us(r.share)} | ${(100 * r.loopbackShare).toFixed(1)} % |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '6' },
      pin: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: npm run bench:profile -- [--streams N] [--seconds S] [--pin]

  runs npm run bench -- --udp-echo --streams N, samples the machine with perf (linux-perf) for
  S seconds while the load runs, and prints where the relay thread's CPU went     [500, 6]
  (--pin: the bench's --pin, the bridge on a core of its own)
`);
    return;
  }
  const streams = Number(values.streams);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(streams) || streams < 1 || !Number.isFinite(seconds) || seconds < 1) {
    process.stderr.write('error USAGE: --streams must be an integer >= 1 and --seconds a number >= 1\n');
    process.exit(2);
  }
  const run = promisify(execFile);
  await run('perf', ['--version']).catch(() => {
    process.stderr.write('error PERF_MISSING: perf is not installed (apt-get install linux-perf)\n');
    process.exit(2);
  });
  const dir = mkdtempSync(join(tmpdir(), 'confmux-profile-'));
  try {
    const bench = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./bench.ts', import.meta.url)), '--udp-echo', '--streams', String(streams), '--seconds', String(seconds + 4), ...(values.pin ? ['--pin'] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // its progress and summary (stderr), its table (stdout)
    const out: string[] = [];
    const exited = once(bench, 'exit');
    const inCall = new Promise<boolean>((resolve) => {
      createInterface({ input: bench.stderr! }).on('line', (line) => {
        out.push(line);
        if (/terminals in a call/.test(line)) resolve(true);
      });
      void exited.then(() => resolve(false));
    });
    createInterface({ input: bench.stdout! }).on('line', (line) => out.push(line));
    if (!(await inCall)) throw new Error(`the bench ended before its terminals were in a call:\n${out.join('\n')}`);
    // past the bench's warm-up
    await new Promise((r) => setTimeout(r, 2000));
    const data = join(dir, 'perf.data');
    await run('perf', ['record', '-a', '-g', '-F', '1999', '-o', data, '--', 'sleep', String(seconds)]);
    const script = await run('perf', ['script', '-i', data, '--comm', 'confmux-pump', '-F', 'comm,ip,sym'], { maxBuffer: 1 << 30 });
    await exited;
    const row = out.find((l) => l.startsWith(`| ${streams} |`));
    // the bench's table: | streams | to | from | lost | CPU | µs CPU/msg | ...
    const usPerMessage = row === undefined ? null : Number(row.split('|')[6]);
    process.stdout.write(`${out.filter((l) => /^(streams|  )/.test(l)).join('\n')}\n\n`);
    process.stdout.write(`${formatBreakdown(breakdown(parsePerfScript(script.stdout)), Number.isFinite(usPerMessage) ? usPerMessage : null)}\n`);
    process.stdout.write('\nµs per message: the share times the bridge\'s CPU per relayed message from the bench (the relay thread is nearly all of it).\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
