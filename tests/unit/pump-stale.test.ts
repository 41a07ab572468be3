/**
 * server.mediaPumpStaleMs: audio from the media server that waited too long in the bridge is
 * dropped, not sent to the terminal late. The bridge runs in a child process (bench/server.ts, the
 * echo stand-in's UDP leg pointed at a socket of this test, standing for the media server), so that
 * the test can stop it (SIGSTOP) while the "media server" goes on sending, as when the machine
 * stalls or the bridge is behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { PASSWORD, bridgeStats, startBridge, stopBridge } from '../../bench/run.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function staleDrops(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^confmux_media_frames_dropped_total\{reason="stale"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** 10 payloads sent while the bridge is stopped for 300 ms, then 1 after: which reach the terminal */
async function stallRun(staleMs: number): Promise<{ late: number; after: number; dropped: number; order: number[] }> {
  const peer = createSocket('udp4');
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
  const bridge = await startBridge({
    CONFMUX_BENCH_UDP_PEER: `127.0.0.1:${peer.address().port}`,
    CONFMUX_BENCH_MEDIA_PUMP: 'on',
    CONFMUX_BENCH_MEDIA_PUMP_STALE_MS: String(staleMs),
  });
  const t = createNodeTerminal({ url: `ws://127.0.0.1:${bridge.port}/`, number: '100001', password: PASSWORD });
  try {
    await t.connect();
    await t.register();
    const call = await t.call('700', { codecs: ['PCMU/8000'] });
    await call.answered();
    const got: number[] = [];
    call.on('audio', (p) => got.push(p[0]!));
    // the leg's address: where the terminal's first frame comes from
    const first = once(peer, 'message');
    call.sendAudio(Buffer.alloc(160, 0xff));
    const [, leg] = (await first) as [Buffer, RemoteInfo];
    const deadline = Date.now() + 3000;
    while ((await bridgeStats(bridge))?.pumped !== 1 && Date.now() < deadline) await sleep(20);
    assert.equal((await bridgeStats(bridge))?.pumped, 1, 'the call is on the pump');

    process.kill(bridge.pid, 'SIGSTOP');
    try {
      for (let i = 0; i < 10; i++) peer.send(Buffer.alloc(160, 1), leg.port, '127.0.0.1');
      await sleep(300);
    } finally {
      process.kill(bridge.pid, 'SIGCONT');
    }
    await sleep(200);
    peer.send(Buffer.alloc(160, 2), leg.port, '127.0.0.1');
    const until = Date.now() + 3000;
    while (!got.includes(2) && Date.now() < until) await sleep(10);
    return { late: got.filter((b) => b === 1).length, after: got.filter((b) => b === 2).length, dropped: await staleDrops(bridge.port), order: got };
  } finally {
    t.close();
    await stopBridge(bridge);
    peer.close();
  }
}

test('server.mediaPumpStaleMs 100: audio that waited 300 ms in the stopped bridge is dropped and counted; what comes after goes through', async () => {
  const r = await stallRun(100);
  assert.equal(r.late, 0, `late frames delivered: ${JSON.stringify(r.order)}`);
  assert.equal(r.after, 1);
  assert.equal(r.dropped, 10);
});

test('server.mediaPumpStaleMs 0: the same audio is delivered late, in order, none dropped', async () => {
  const r = await stallRun(0);
  assert.equal(r.late, 10, JSON.stringify(r.order));
  assert.deepEqual(r.order, [...Array<number>(10).fill(1), 2]);
  assert.equal(r.dropped, 0);
});
