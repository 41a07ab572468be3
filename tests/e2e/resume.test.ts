// Resume instead of hang-up (issue 8): a terminal whose connections drop mid-call comes back with
// its resume token and its call goes on, on the same PBX channels; past the window the call ends.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { decodePayload } from '../../bridge/media/pcm.ts';
import { writeFrameHeader } from '../../bridge/protocol/frame.ts';
import { ensureSandbox } from '../helpers/sandbox.ts';
import { channels, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';
import { describeTones, dominantTone } from '../helpers/tone.ts';

let bridge: TestBridge;
let a: TerminalClient;
let b: TerminalClient;
let ca: CallSession;
let cb: CallSession;
let stop: () => void;

// 400 Hz: whole cycles in each 20 ms frame
const TONE = new Uint8Array(640);
for (let i = 0; i < 320; i++) {
  const s = Math.round(8000 * Math.sin((2 * Math.PI * 400 * i) / 16000));
  TONE[2 * i] = s & 0xff;
  TONE[2 * i + 1] = (s >> 8) & 0xff;
}

/** What B hears during `ms`: the dominant of 400 Hz (A's tone) and 1000 Hz. */
async function bHears(ms: number): Promise<ReturnType<typeof dominantTone>> {
  const got: number[] = [];
  const on = (p: Uint8Array): void => void got.push(...decodePayload(cb.codec, p));
  cb.on('audio', on);
  await new Promise((r) => setTimeout(r, ms));
  cb.off('audio', on);
  return dominantTone(Int16Array.from(got), cb.codec.sampleRate, [400, 1000], { skipSeconds: 0.3 });
}

/** The name of a call's media channel in Asterisk (its id names the call). */
async function mediaChannelOf(call: CallSession): Promise<string | undefined> {
  return (await channels()).find((l) => l.includes(`${call.id}-media`))?.split('!')[0];
}

before(async () => {
  await ensureSandbox();
  bridge = await startBridge();
  a = createNodeTerminal({ url: bridge.url, number: '1001', password: 'sandbox-1001' });
  b = createNodeTerminal({ url: bridge.url, number: '1002', password: 'sandbox-1002' });
  for (const t of [a, b]) {
    await t.connect();
    await t.register();
  }
  ca = await a.call('707');
  cb = await b.call('707');
  await Promise.all([ca.answered(), cb.answered()]);
  const timer = setInterval(() => {
    ca.sendAudio(TONE);
    cb.sendAudio(new Uint8Array(640));
  }, 20);
  stop = () => clearInterval(timer);
});
after(async () => {
  stop?.();
  a?.close();
  b?.close();
  await bridge?.close();
});

test('the network drops mid-call: the terminal resumes by itself and its call goes on on the same channels', async () => {
  const before = await bHears(1500);
  assert.equal(before.freq, 400, `B hears A before the cut: ${describeTones(before)}`);
  const channel = await mediaChannelOf(ca);
  assert.ok(channel, 'A has its media channel');
  const events: string[] = [];
  a.on('reconnecting', () => events.push('reconnecting'));
  const resumed = new Promise<void>((resolve) => a.once('resumed', () => resolve()));
  // cut: both of A's connections die without a close frame, as when a network goes away
  (a as unknown as { ws: WebSocket }).ws.terminate();
  (ca as unknown as { audio: WebSocket }).audio.terminate();
  await resumed;
  events.push('resumed');
  assert.deepEqual(events, ['reconnecting', 'resumed']);
  assert.equal(ca.state, 'answered', 'the same call, still answered');
  assert.equal(await mediaChannelOf(ca), channel, 'the PBX never lost the call: same channel');
  const afterResume = await bHears(2000);
  console.log(`B before the cut: ${describeTones(before)}\nB after the resume: ${describeTones(afterResume)}`);
  assert.equal(afterResume.freq, 400, 'B hears A again');
});

test('only the audio connection drops: the terminal binds it again with a fresh token', async () => {
  const channel = await mediaChannelOf(ca);
  (ca as unknown as { audio: WebSocket }).audio.terminate();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(ca.state, 'answered');
  assert.equal(await mediaChannelOf(ca), channel);
  const heard = await bHears(2000);
  assert.equal(heard.freq, 400, `B hears A again: ${describeTones(heard)}`);
});

test('a terminal that does not come back: past the resume window its call ends and nothing is left', async () => {
  const short = await startBridge({ limits: { resumeWindowMs: 1500 } });
  try {
    const next = (ws: WebSocket): Promise<Record<string, unknown>> => new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Record<string, unknown>)));
    const open = (): Promise<WebSocket> => new Promise((resolve) => {
      const ws = new WebSocket(short.url);
      ws.once('open', () => resolve(ws));
    });
    const control = await open();
    control.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number: '1003', password: 'sandbox-1003' }));
    const bound = await next(control);
    assert.equal(typeof bound.resume, 'string', 'bound carries a resume token');
    control.send(JSON.stringify({ type: 'register' }));
    await next(control);
    control.send(JSON.stringify({ type: 'call', to: '707', codecs: ['PCMU/8000'] }));
    const calling = (await next(control)) as { callId: string; media: { audio: { token: string } } };
    const audio = await open();
    audio.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number: '1003', callId: calling.callId, token: calling.media.audio.token }));
    await next(audio);
    const frame = new Uint8Array(170);
    writeFrameHeader(frame, 0, 0, 0, 0, 0);
    audio.send(frame);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await channels()).some((l) => l.includes(`${calling.callId}-`)));
    control.terminate();
    audio.terminate();
    await new Promise((r) => setTimeout(r, 800));
    assert.ok((await channels()).some((l) => l.includes(`${calling.callId}-`)), 'kept during the window');
    // a wrong token does not resume anything
    const thief = await open();
    thief.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number: '1003', resume: 'x'.repeat(24) }));
    const refused = await new Promise<number>((resolve) => thief.once('close', (code) => resolve(code)));
    assert.equal(refused, 4434);
    assert.deepEqual(await waitNoChannels((l) => l.includes(`${calling.callId}-`), 6000), [], 'gone after the window');
  } finally {
    await short.close();
  }
});
