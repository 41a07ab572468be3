// The audio connection's media path with the fast reader and one-write framing, through a real
// bridge (bench/server.ts with the echo stand-in): frames come back re-framed, and bad input is
// refused with the same codes as before (text, oversized, wrong codec, bad header), whichever of
// the fast reader or ws's reader saw it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { PASSWORD, bridgeStats, startBridge, stopBridge, type Bridge } from '../../bench/run.ts';
import { FRAME_HEADER_BYTES, readFrameHeader, writeFrameHeader } from '../../bridge/protocol/frame.ts';

async function inCall(bridge: Bridge, number: string): Promise<{ ctl: WebSocket; audio: WebSocket; frames: Buffer[]; closed: Promise<number> }> {
  const url = `ws://127.0.0.1:${bridge.port}/`;
  const ctl = new WebSocket(url);
  const next = (ws: WebSocket): Promise<Record<string, unknown>> => new Promise((r) => ws.once('message', (d: Buffer) => r(JSON.parse(d.toString()) as Record<string, unknown>)));
  await new Promise((r) => ctl.once('open', r));
  ctl.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number, password: PASSWORD }));
  assert.equal((await next(ctl)).type, 'bound');
  ctl.send(JSON.stringify({ type: 'register', id: 1 }));
  assert.equal((await next(ctl)).type, 'registered');
  ctl.send(JSON.stringify({ type: 'call', id: 2, to: '700', codecs: ['PCMU/8000'] }));
  const calling = (await next(ctl)) as { callId: string; media: { audio: { token: string } } };
  const audio = new WebSocket(url);
  await new Promise((r) => audio.once('open', r));
  audio.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number, callId: calling.callId, token: calling.media.audio.token }));
  assert.equal((await next(audio)).type, 'bound');
  const frames: Buffer[] = [];
  audio.on('message', (d: Buffer, bin: boolean) => {
    if (bin) frames.push(d);
  });
  const closed = new Promise<number>((r) => audio.on('close', (c: number) => r(c)));
  return { ctl, audio, frames, closed };
}

function frame(codec: number, payload: number, seq: number): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES + payload, 0xff);
  writeFrameHeader(b, 0, codec, seq === 0 ? 1 : 0, seq, seq * 160);
  b[FRAME_HEADER_BYTES] = seq & 0xff;
  return b;
}

test('media path: frames come back through the echo; bad input refused with its code', async () => {
  const bridge = await startBridge();
  try {
    // good frames, masked with random keys by the ws client
    const a = await inCall(bridge, '5001');
    for (let i = 0; i < 5; i++) a.audio.send(frame(0, 160, i));
    const end = Date.now() + 3000;
    while (a.frames.length < 5 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.frames.length, 5);
    a.frames.forEach((f, i) => {
      assert.equal(f.length, FRAME_HEADER_BYTES + 160);
      const h = readFrameHeader(f);
      assert.equal(h.codec, 0);
      assert.equal(h.seq, i);
      assert.equal(h.flags & 1, i === 0 ? 1 : 0);
      assert.equal(f[FRAME_HEADER_BYTES], i);
    });
    a.audio.close();
    a.ctl.close();

    const cases: [string, (ws: WebSocket) => void, number][] = [
      ['text on the audio connection', (ws) => ws.send('hello'), 4410],
      ['an audio frame over maxAudioFrameBytes', (ws) => ws.send(frame(0, 5000, 0)), 4413],
      ['another codec than the call\'s', (ws) => ws.send(frame(1, 160, 0)), 4410],
      ['a bad header', (ws) => ws.send(Buffer.from('2000010112340000000100', 'hex')), 4410],
    ];
    let n = 0;
    for (const [what, send, code] of cases) {
      const c = await inCall(bridge, String(5100 + n++));
      send(c.audio);
      assert.equal(await c.closed, code, what);
      c.ctl.close();
    }
  } finally {
    await stopBridge(bridge);
  }
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A terminal catching up after a stall (5 s of frames at once) has the excess dropped and goes on;
 * one sending far above its call's rate for long (3,000 frames at once: the rate limit drops more
 * than 10 seconds' worth at limits.audioFramesPerSecond, 100) is closed with RATE_LIMITED.
 */
async function floodCase(bridge: Bridge, number: string, pumped: () => Promise<boolean>): Promise<void> {
  const c = await inCall(bridge, number);
  try {
    // first frames echoed: the call's media flows (and, on the pump path, the pump has taken it)
    c.audio.send(frame(0, 160, 0));
    const deadline = Date.now() + 5000;
    while ((c.frames.length === 0 || !(await pumped())) && Date.now() < deadline) {
      c.audio.send(frame(0, 160, 1));
      await sleep(40);
    }
    assert.ok(await pumped(), 'on the expected path');
    for (let i = 0; i < 250; i++) c.audio.send(frame(0, 160, 2 + i));
    await sleep(300);
    c.frames.length = 0;
    for (let i = 0; i < 5; i++) {
      c.audio.send(frame(0, 160, 300 + i));
      await sleep(20);
    }
    const back = Date.now() + 3000;
    while (c.frames.length < 5 && Date.now() < back) await sleep(10);
    assert.equal(c.frames.length, 5, 'after the catch-up burst the call goes on');
    assert.equal(c.audio.readyState, WebSocket.OPEN);
    for (let i = 0; i < 3000; i++) c.audio.send(frame(0, 160, 400 + i));
    const code = await Promise.race([c.closed, sleep(5000).then(() => 0)]);
    assert.equal(code, 4429, 'the flood is closed with RATE_LIMITED');
  } finally {
    c.audio.terminate();
    c.ctl.close();
  }
}

test('media path (JavaScript): a catch-up burst is dropped down to the rate and the call goes on; a flood far above it for long is closed with RATE_LIMITED (4429)', async () => {
  const bridge = await startBridge({ CONFMUX_BENCH_MEDIA_PUMP: 'off' });
  try {
    // the in-process echo stand-in has no socket for the pump: every call stays on the JavaScript path
    await floodCase(bridge, '5201', async () => ((await bridgeStats(bridge))?.pumped ?? 0) === 0);
  } finally {
    await stopBridge(bridge);
  }
});

test('media path (native pump): the same: a catch-up burst goes on, a flood is handed back and closed with RATE_LIMITED (4429)', async () => {
  // the "media server": echoes every datagram to the leg it came from
  const peer = createSocket('udp4');
  peer.on('message', (m: Buffer, from: RemoteInfo) => peer.send(m, from.port, from.address));
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
  const bridge = await startBridge({ CONFMUX_BENCH_UDP_PEER: `127.0.0.1:${peer.address().port}`, CONFMUX_BENCH_MEDIA_PUMP: 'on' });
  try {
    await floodCase(bridge, '5202', async () => (await bridgeStats(bridge))?.pumped === 1);
  } finally {
    await stopBridge(bridge);
    peer.close();
  }
});
