// The bridge as an operator runs it (`confmux serve`): health, draining on SIGTERM, and recovery of
// channels left behind by a bridge that was killed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import { ARI_PASSWORD, ARI_WS_URL, ari, ariAuthHeader, asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { once } from 'node:events';
import WebSocket from 'ws';
import { CLI, channels, startBridge, waitNoChannels } from '../helpers/bridge.ts';

interface Served {
  child: ChildProcess;
  port: number;
  log: () => string;
  exited: Promise<number | null>;
}

/** Starts `confmux serve` on a free loopback port, configured through the environment only. */
async function serve(app: string, env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: { ...process.env, CONFMUX_HOST: '127.0.0.1', CONFMUX_PORT: '0', CONFMUX_PLAIN: 'true', CONFMUX_ARI_PASSWORD: ARI_PASSWORD, CONFMUX_ARI_APP: app, CONFMUX_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not listen:\n${out}`)), 20000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /"port":(\d+),"path".*"msg":"listening"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, port, log: () => out, exited };
}

async function healthz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function waitHealthy(port: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if ((await healthz(port)).status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('bridge never became healthy');
}

test('config errors are all listed and serve refuses to start', async () => {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: { ...process.env, CONFMUX_ARI_PASSWORD: '', CONFMUX_PORT: 'eighty', CONFMUX_ASTERISK_MEDIA_TRANSPORT: 'pigeon' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 2);
  assert.match(err, /server\.port/);
  assert.match(err, /asterisk\.password/);
  assert.match(err, /asterisk\.mediaTransport/);
  assert.doesNotMatch(err, /confmux-sandbox/, 'no secret in the output');
});

test('SIGTERM drains: new terminals refused, calls end with reason shutdown, no channel left', async () => {
  await ensureSandbox();
  const app = `confmux-test-drain-${process.pid}`;
  const s = await serve(app, { CONFMUX_DRAIN_TIMEOUT_MS: '1500' });
  try {
    await waitHealthy(s.port);
    const h = await healthz(s.port);
    assert.equal(h.body.pbx, 'up');
    const t = createNodeTerminal({ url: `ws://127.0.0.1:${s.port}`, number: '1006', password: 'sandbox-1006' });
    await t.connect();
    await t.register();
    const call = await t.call('706');
    await call.answered();
    assert.equal((await healthz(s.port)).body.calls, 1);
    s.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    // draining: health says so, and a new terminal is turned away
    const during = await healthz(s.port);
    assert.equal(during.status, 503);
    assert.equal(during.body.status, 'draining');
    const late = createNodeTerminal({ url: `ws://127.0.0.1:${s.port}`, number: '1005', password: 'sandbox-1005' });
    await assert.rejects(late.connect());
    assert.equal(call.state, 'answered', 'the call in progress goes on while draining');
    const info = await call.ended();
    assert.equal(info.reason, 'shutdown');
    assert.equal(await s.exited, 0);
    assert.deepEqual(await waitNoChannels((l) => l.includes(app) || l.includes(`${call.id}-`)), []);
    assert.doesNotMatch(s.log(), /sandbox-100\d|confmux-sandbox/, 'no password in the logs');
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('a bridge killed mid-call leaves channels; the next bridge with the same app hangs them up', async () => {
  await ensureSandbox();
  const app = `confmux-test-crash-${process.pid}`;
  const first = await serve(app);
  await waitHealthy(first.port);
  const t = createNodeTerminal({ url: `ws://127.0.0.1:${first.port}`, number: '1004', password: 'sandbox-1004' });
  await t.connect();
  await t.register();
  const call = await t.call('707');
  await call.answered();
  first.child.kill('SIGKILL');
  await first.exited;
  await new Promise((r) => setTimeout(r, 500));
  const orphaned = (await channels()).filter((l) => l.includes(`${call.id}-`));
  assert.ok(orphaned.length >= 1, 'the killed bridge left its channels in Asterisk');
  const second = await serve(app);
  try {
    assert.deepEqual(await waitNoChannels((l) => l.includes(`${call.id}-`), 8000), [], 'the new bridge hung the orphans up');
  } finally {
    second.child.kill('SIGTERM');
    await second.exited;
  }
});

test('the periodic sweep hangs up our externalMedia channels that belong to no call, and leaves another app\'s alone', async (t) => {
  await ensureSandbox();
  const app = `confmux-test-sweep-${process.pid}`;
  const other = `${app}-b`;
  const bridge = await startBridge({ asterisk: { app, orphanSweepMs: 1000 } });
  t.after(() => bridge.close());
  // another bridge's application on the same Asterisk, whose name extends ours
  const otherApp = new WebSocket(`${ARI_WS_URL}?app=${encodeURIComponent(other)}`, { headers: { Authorization: ariAuthHeader() } });
  await once(otherApp, 'open');
  t.after(() => otherApp.close());
  const create = async (inApp: string, id: string): Promise<void> => {
    // as a clean-up that failed would leave it: an RTP externalMedia channel, up in the app
    const res = await ari(`/ari/channels/externalMedia?app=${encodeURIComponent(inApp)}&channelId=${encodeURIComponent(id)}&external_host=127.0.0.1:9&format=ulaw`, { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
  };
  const ours = `${app}-ORPHAN000001-media`;
  const theirs = `${other}-ORPHAN000002-media`;
  await create(app, ours);
  await create(other, theirs);
  t.after(() => ari(`/ari/channels/${encodeURIComponent(theirs)}`, { method: 'DELETE' }).then(() => undefined));
  const list = async (): Promise<string[]> => ((await (await ari('/ari/channels')).json()) as { id: string }[]).map((c) => c.id);
  const deadline = Date.now() + 6000;
  while (Date.now() < deadline && (await list()).includes(ours)) await new Promise((r) => setTimeout(r, 200));
  const left = await list();
  assert.ok(!left.includes(ours), 'our orphaned externalMedia channel was hung up');
  assert.ok(left.includes(theirs), "the other app's channel is still there");
});

/** 20 ms of L16/16000 tone, little-endian, as the SDK sends it; `freq` must fit a whole number of cycles in 20 ms (a multiple of 50 Hz), or repeating the frame makes another tone */
function toneFrame(freq: number): Uint8Array {
  const f = new Uint8Array(640);
  for (let i = 0; i < 320; i++) {
    const s = Math.round(6000 * Math.sin((2 * Math.PI * freq * i) / 16000));
    f[2 * i] = s & 0xff;
    f[2 * i + 1] = (s >> 8) & 0xff;
  }
  return f;
}

test('server.workers 2 on Asterisk: console invitations reach terminals on either worker, and they hear each other in one room', async () => {
  await ensureSandbox();
  // the dialplan invites with Stasis(confmux,invite,N): the shared app is confmux
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: { ...process.env, CONFMUX_HOST: '127.0.0.1', CONFMUX_PORT: '0', CONFMUX_PLAIN: 'true', CONFMUX_ARI_PASSWORD: ARI_PASSWORD, CONFMUX_ARI_APP: 'confmux', CONFMUX_WORKERS: '2', CONFMUX_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const open: ReturnType<typeof createNodeTerminal>[] = [];
  try {
    let port = 0;
    for (let i = 0; i < 100 && !port; i++) {
      port = Number(/"port":(\d+),"path"[^\n]*"msg":"listening/.exec(out)?.[1] ?? 0);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(port, `the primary listens:\n${out}`);
    // both workers up on ARI, and worker 0 on the shared app too
    let apps = '';
    for (let i = 0; i < 100; i++) {
      apps = await asteriskRx('ari show apps');
      if (/\bconfmux-w0\b/.test(apps) && /\bconfmux-w1\b/.test(apps) && /^\s*confmux\s*$/m.test(apps)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(apps, /confmux-w1/, `ari show apps:\n${apps}`);
    // 1008 is held by worker 0, 1009 by worker 1 (workerForNumber)
    const calls: Awaited<ReturnType<import('../../bridge/sdk/Invitation.ts').Invitation['accept']>>[] = [];
    for (const [number, freq] of [['1008', 400], ['1009', 1000]] as const) {
      const t = createNodeTerminal({ url: `ws://127.0.0.1:${port}`, number, password: `sandbox-${number}` });
      open.push(t);
      await t.connect();
      await t.register();
      const ringing = new Promise<import('../../bridge/sdk/Invitation.ts').Invitation>((resolve) => t.once('incoming', resolve));
      await asteriskRx(`channel originate Local/${number}@confmux-terminals extension 704@confmux-rooms`);
      const inv = await Promise.race([ringing, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no invitation reached ${number}:\n${out.slice(-3000)}`)), 8000))]);
      const call = await inv.accept({ codecs: ['L16/16000'] });
      await call.answered();
      const frame = toneFrame(freq);
      const timer = setInterval(() => call.sendAudio(frame), 20);
      call.once('hangup', () => clearInterval(timer));
      calls.push(call);
    }
    // what each hears over 2 s, once both are in
    await new Promise((r) => setTimeout(r, 1500));
    const heard = calls.map((c) => {
      const samples: number[] = [];
      c.on('audio', (p: Uint8Array) => {
        for (let i = 0; i + 1 < p.length; i += 2) samples.push(((p[i + 1]! << 8) | p[i]!) << 16 >> 16);
      });
      return samples;
    });
    await new Promise((r) => setTimeout(r, 2000));
    const list = await asteriskRx('confbridge list 704');
    assert.match(list, /1008/, `confbridge list 704:\n${list}`);
    assert.match(list, /1009/, `confbridge list 704:\n${list}`);
    const { goertzel } = await import('../helpers/tone.ts');
    const [at8, at9] = heard as [number[], number[]];
    console.log(`1008 (worker 0) heard 1000 Hz ${goertzel(at8, 16000, 1000).toExponential(2)} vs 400 Hz ${goertzel(at8, 16000, 400).toExponential(2)}; 1009 (worker 1) heard 400 Hz ${goertzel(at9, 16000, 400).toExponential(2)} vs 1000 Hz ${goertzel(at9, 16000, 1000).toExponential(2)}`);
    assert.ok(goertzel(at8, 16000, 1000) > 100 * goertzel(at8, 16000, 400), '1008 hears 1009, not itself');
    assert.ok(goertzel(at9, 16000, 400) > 100 * goertzel(at9, 16000, 1000), '1009 hears 1008, not itself');
    await Promise.all(calls.map((c) => c.hangup()));
  } finally {
    for (const t of open) t.close();
    child.kill('SIGTERM');
    await exited;
  }
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/1008@') || l.startsWith('Local/1009@') || l.includes('!confmux-w'), 8000), []);
});
