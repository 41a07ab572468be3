/**
 * server.mediaPumpStaleMs: audio that waited too long in the bridge is dropped, not sent on late,
 * both ways. The bridge runs in a child process (bench/server.ts, the echo stand-in's UDP leg
 * pointed at a socket of this test, standing for the media server), so that the test can stop it
 * (SIGSTOP) while the "media server" or the terminal goes on sending, as when the machine stalls or
 * the bridge is behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { PASSWORD, bridgeStats, startBridge, stopBridge } from '../../bench/run.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { CallSession } from '../../bridge/sdk/node.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function staleDrops(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^confmux_media_frames_dropped_total\{reason="stale"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** SIGSTOP, then wait until every thread of the process is stopped (the signal takes effect a moment later) */
async function stop(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  // /proc/<pid>/task/<tid>/stat: "tid (comm) state ...", the comm may hold spaces and parentheses
  const state = (tid: string): string => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  };
  const deadline = Date.now() + 2000;
  while (!readdirSync(`/proc/${pid}/task`).every((tid) => state(tid) === 'T')) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not stop`);
    await sleep(1);
  }
}

interface Stalled {
  call: CallSession;
  /** the first byte of each payload the terminal received */
  toTerminal: number[];
  /** the first byte of each payload the media server received */
  toMediaServer: number[];
  peer: UdpSocket;
  leg: RemoteInfo;
}

/**
 * A pumped PCMU call whose bridge is stopped for 300 ms while `during` sends; then `after` sends
 * and the call runs until `done` holds (3 s at most). Returns what each side received and the
 * stale drops the bridge counted.
 */
async function stalledCall(staleMs: number, during: (s: Stalled) => Promise<void>, after: (s: Stalled) => void, done: (s: Stalled) => boolean): Promise<Stalled & { dropped: number }> {
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
    const toTerminal: number[] = [];
    call.on('audio', (p) => toTerminal.push(p[0]!));
    // the leg's address: where the terminal's first frame comes from
    const first = once(peer, 'message');
    call.sendAudio(Buffer.alloc(160, 0xff));
    const [, leg] = (await first) as [Buffer, RemoteInfo];
    const toMediaServer: number[] = [];
    peer.on('message', (m: Buffer) => toMediaServer.push(m[0]!));
    const deadline = Date.now() + 3000;
    while ((await bridgeStats(bridge))?.pumped !== 1 && Date.now() < deadline) await sleep(20);
    assert.equal((await bridgeStats(bridge))?.pumped, 1, 'the call is on the pump');

    const s: Stalled = { call, toTerminal, toMediaServer, peer, leg };
    await stop(bridge.pid);
    try {
      await during(s);
      await sleep(300);
    } finally {
      process.kill(bridge.pid, 'SIGCONT');
    }
    await sleep(200);
    after(s);
    const until = Date.now() + 3000;
    while (!done(s) && Date.now() < until) await sleep(10);
    return { ...s, dropped: await staleDrops(bridge.port) };
  } finally {
    t.close();
    await stopBridge(bridge);
    peer.close();
  }
}

/** media server to terminal: 10 payloads (first byte 1) while the bridge is stopped, 1 (byte 2) after */
const fromMediaServer = (staleMs: number): ReturnType<typeof stalledCall> =>
  stalledCall(
    staleMs,
    async (s) => {
      for (let i = 0; i < 10; i++) s.peer.send(Buffer.alloc(160, 1), s.leg.port, '127.0.0.1');
    },
    (s) => s.peer.send(Buffer.alloc(160, 2), s.leg.port, '127.0.0.1'),
    (s) => s.toTerminal.includes(2),
  );

/** terminal to media server: 15 frames 20 ms apart (first byte 1 to 15) while the bridge is stopped, 1 (byte 16) after */
const fromTerminal = (staleMs: number): ReturnType<typeof stalledCall> =>
  stalledCall(
    staleMs,
    async (s) => {
      for (let i = 1; i <= 15; i++) {
        s.call.sendAudio(Buffer.alloc(160, i));
        await sleep(20);
      }
    },
    (s) => s.call.sendAudio(Buffer.alloc(160, 16)),
    (s) => s.toMediaServer.includes(16),
  );

test('server.mediaPumpStaleMs 100: audio from the media server that waited 300 ms in the stopped bridge is dropped and counted; what comes after goes through', async () => {
  const r = await fromMediaServer(100);
  assert.deepEqual(r.toTerminal, [2], 'only the payload sent after the stall');
  assert.equal(r.dropped, 10);
});

test('server.mediaPumpStaleMs 0: the same audio is delivered late, in order, none dropped', async () => {
  const r = await fromMediaServer(0);
  assert.deepEqual(r.toTerminal, [...Array<number>(10).fill(1), 2]);
  assert.equal(r.dropped, 0);
});

test('server.mediaPumpStaleMs 100: of 300 ms of a terminal\'s audio read at once after the stall, only the newest 100 ms goes to the media server', async () => {
  const r = await fromTerminal(100);
  // 100 ms of PCMU at 8 kHz: 800 samples, the newest 5 frames of 160
  assert.deepEqual(r.toMediaServer, [11, 12, 13, 14, 15, 16]);
  assert.equal(r.dropped, 10);
});

test('server.mediaPumpStaleMs 0: the terminal\'s 300 ms all go to the media server, in order', async () => {
  const r = await fromTerminal(0);
  assert.deepEqual(r.toMediaServer, [...Array.from({ length: 15 }, (_, i) => i + 1), 16]);
  assert.equal(r.dropped, 0);
});
