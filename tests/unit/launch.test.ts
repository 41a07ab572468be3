/**
 * `confmux serve` (bin/confmux.mjs) runs the bridge with V8's heap options (bin/heapFlags.mjs),
 * re-executing itself with those that were not given, and SIGTERM /
 * SIGINT still reach the bridge exactly once however they are sent. No media server is needed:
 * the bridge listens while its ARI link retries (to a closed port).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HEAP_FLAGS, heapArgs, missingHeapFlags } from '../../bin/heapFlags.mjs';
import { MALLOC_ARENAS, mallocArenasEnv, mallocArenasGiven } from '../../bin/mallocArenas.mjs';
import { bundleToRun } from '../../bin/bundle.mjs';

const CLI = fileURLToPath(new URL('../../bin/confmux.mjs', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../bridge/dist/main.mjs', import.meta.url));

test('the heap options: which are missing, and what a bridge started from here gets', () => {
  const SEMI = '--max-semi-space-size=1';
  const GROW = '--heap-growing-percent=25';
  assert.deepEqual(HEAP_FLAGS, [SEMI, GROW]);
  assert.deepEqual(missingHeapFlags([], ''), [SEMI, GROW]);
  assert.deepEqual(missingHeapFlags(['--import', 'tsx'], '--enable-source-maps'), [SEMI, GROW]);
  assert.deepEqual(missingHeapFlags(['--max-semi-space-size=4'], ''), [GROW]);
  assert.deepEqual(missingHeapFlags([], '--max_semi_space_size=16'), [GROW]);
  assert.deepEqual(missingHeapFlags(['--heap_growing_percent=50', '--max-semi-space-size=2'], ''), []);
  // node refuses --heap-growing-percent in NODE_OPTIONS: it does not count there
  assert.deepEqual(missingHeapFlags([], '--heap-growing-percent=50'), [SEMI, GROW]);
  assert.deepEqual(heapArgs([], ''), [SEMI, GROW]);
  // this process's own settings are passed on; one in NODE_OPTIONS is inherited (a flag would override it)
  assert.deepEqual(heapArgs(['--import', 'tsx', '--max-semi-space-size=8'], ''), ['--max-semi-space-size=8', GROW]);
  assert.deepEqual(heapArgs(['--heap-growing-percent=0'], '--max-semi-space-size=16'), ['--heap-growing-percent=0']);
});

test('malloc arenas: the bridge\'s MALLOC_ARENA_MAX unless the environment sets one', () => {
  assert.equal(MALLOC_ARENAS, '2');
  assert.equal(mallocArenasGiven({}), false);
  assert.equal(mallocArenasGiven({ MALLOC_ARENA_MAX: '' }), false);
  assert.equal(mallocArenasGiven({ MALLOC_ARENA_MAX: '4' }), true);
  assert.deepEqual(mallocArenasEnv({ PATH: '/bin' }), { PATH: '/bin', MALLOC_ARENA_MAX: '2' });
  assert.deepEqual(mallocArenasEnv({ PATH: '/bin', MALLOC_ARENA_MAX: '4' }), { PATH: '/bin', MALLOC_ARENA_MAX: '4' }, 'the operator\'s value wins');
});

test('the bundle runs only while it matches the sources byte for byte', () => {
  const root = mkdtempSync(join(tmpdir(), 'confmux-bundle-'));
  try {
    assert.deepEqual(bundleToRun(root), { main: null, why: null }, 'no bundle: the sources, and nothing to say');
    mkdirSync(join(root, 'bridge', 'dist'), { recursive: true });
    mkdirSync(join(root, 'bridge', 'cli'), { recursive: true });
    writeFileSync(join(root, 'bridge', 'cli', 'main.ts'), 'export {};\n');
    writeFileSync(join(root, 'bridge', 'dist', 'main.mjs'), 'export {};\n');
    const sha = createHash('sha256').update('export {};\n').digest('hex');
    writeFileSync(join(root, 'bridge', 'dist', 'sources.json'), JSON.stringify({ files: { 'bridge/cli/main.ts': sha } }));
    assert.deepEqual(bundleToRun(root), { main: join(root, 'bridge', 'dist', 'main.mjs'), why: null });
    // a release unpacked over the old one keeps the commit's times: only the content tells
    writeFileSync(join(root, 'bridge', 'cli', 'main.ts'), 'export {}; // edited\n');
    assert.deepEqual(bundleToRun(root), { main: null, why: 'bridge/cli/main.ts changed since the bundle was made' });
    unlinkSync(join(root, 'bridge', 'cli', 'main.ts'));
    assert.deepEqual(bundleToRun(root), { main: null, why: 'bridge/cli/main.ts is gone' });
    writeFileSync(join(root, 'bridge', 'dist', 'sources.json'), '{');
    assert.deepEqual(bundleToRun(root), { main: null, why: 'bridge/dist/sources.json is unreadable' });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

interface Serving {
  main: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  /** the process that serves: main itself (re-executed in place) or its child (supervised) */
  bridgePid: number;
}

async function serve(extraEnv: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Serving> {
  // its own process group, so that a signal can go to the group as a terminal's Ctrl-C does
  const main = spawn(process.execPath, [...nodeArgs, CLI, 'serve'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      CONFMUX_HOST: '127.0.0.1',
      CONFMUX_PORT: '0',
      CONFMUX_PLAIN: 'true',
      CONFMUX_ARI_URL: 'http://127.0.0.1:1',
      CONFMUX_ARI_PASSWORD: 'unused',
      CONFMUX_LOG_LEVEL: 'info',
      MALLOC_ARENA_MAX: '',
      ...extraEnv,
    },
  });
  let out = '';
  main.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  main.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => main.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && !/"msg":"listening"/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /"msg":"listening"/, out);
  const children = readFileSync(`/proc/${main.pid}/task/${main.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const bridgePid = children.find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('confmux.mjs')) ?? main.pid!;
  return { main, out: () => out, exited, bridgePid };
}

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
const environ = (pid: number): string[] => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
const count = (text: string, re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;

test('serve: the bridge runs with the heap options; SIGTERM to the main pid drains it once', { skip: process.platform !== 'linux' }, async () => {
  const s = await serve();
  try {
    for (const flag of HEAP_FLAGS) assert.ok(cmdline(s.bridgePid).includes(flag), cmdline(s.bridgePid).join(' '));
    // scripts/node.sh (npm test) builds bridge/dist: the bridge runs it, without tsx's loader
    assert.ok(existsSync(BUNDLE), 'bridge/dist/main.mjs: npm run build');
    assert.match(s.out(), /"build":"bundle"/);
    assert.ok(environ(s.bridgePid).includes('MALLOC_ARENA_MAX=2'), 'glibc\'s arenas bounded');
    s.main.kill('SIGTERM');
    assert.equal(await s.exited, 0);
    assert.equal(count(s.out(), /"msg":"draining/), 1, s.out());
    assert.equal(count(s.out(), /second signal/), 0, s.out());
    assert.match(s.out(), /"msg":"stopped"/);
  } finally {
    s.main.kill('SIGKILL');
  }
});

test('serve: SIGINT to the whole process group (Ctrl-C) stops the bridge once, and nothing is left', { skip: process.platform !== 'linux' }, async () => {
  // (and an operator's MALLOC_ARENA_MAX and heap option are kept, the missing one added; the sources
  // run through tsx when asked to)
  const s = await serve({ MALLOC_ARENA_MAX: '4', CONFMUX_FROM_SOURCE: '1' }, ['--heap-growing-percent=50']);
  try {
    assert.match(s.out(), /"build":"source"/);
    assert.ok(environ(s.bridgePid).includes('MALLOC_ARENA_MAX=4'), 'the operator\'s value');
    const args = cmdline(s.bridgePid);
    assert.ok(args.includes('--heap-growing-percent=50') && !args.includes('--heap-growing-percent=25'), args.join(' '));
    assert.ok(args.includes('--max-semi-space-size=1'), args.join(' '));
    process.kill(-s.main.pid!, 'SIGINT');
    assert.equal(await s.exited, 0);
    assert.equal(count(s.out(), /"msg":"draining/), 1, s.out());
    assert.equal(count(s.out(), /second signal/), 0, s.out());
    await new Promise((r) => setTimeout(r, 200));
    assert.throws(() => process.kill(s.bridgePid, 0), 'the bridge process is gone');
  } finally {
    try {
      process.kill(-s.main.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
});
