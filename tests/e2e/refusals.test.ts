// Bad input on the one port: each case gets its documented code and a clean close, creates no
// channel on the PBX, and a call in progress on the same bridge goes on undisturbed (issue 2).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { FRAME_HEADER_BYTES, writeFrameHeader } from '../../bridge/protocol/frame.ts';
import { ensureSandbox } from '../helpers/sandbox.ts';
import { channels, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';

let bridge: TestBridge;
let talker: TerminalClient;
let listener: TerminalClient;
let talkCall: CallSession;
let listenCall: CallSession;
let pacer: NodeJS.Timeout;
let heard = 0;
let lastHeard = 0;
let maxGapMs = 0;

interface Closed {
  code: number;
  reason: string;
}

function open(url = bridge.url): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function closed(ws: WebSocket, timeoutMs = 8000): Promise<Closed> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('not closed in time')), timeoutMs);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

function nextText(ws: WebSocket): Promise<Record<string, unknown>> {
  return new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Record<string, unknown>)));
}

function bindControl(ws: WebSocket, number: string, password: string): void {
  ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number, password }));
}

/** Channels this bridge created (their ids start with confmux-). */
async function channelCount(): Promise<number> {
  return (await channels()).filter((l) => l.includes('!confmux-')).length;
}

/**
 * The count once it has stopped moving (two reads 300 ms apart agree, within 5 s): channels that
 * an earlier test file's bridge hung up on its way out may still be going away when this starts.
 */
async function settledChannelCount(): Promise<number> {
  let last = await channelCount();
  for (let i = 0; i < 16; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await channelCount();
    if (now === last) return now;
    last = now;
  }
  return last;
}

before(async () => {
  await ensureSandbox();
  bridge = await startBridge({ limits: { bindTimeoutMs: 400 } });
  // a call in progress that must not notice anything: 1009 talks, 1010 listens, in room 704
  talker = createNodeTerminal({ url: bridge.url, number: '1009', password: 'sandbox-1009' });
  listener = createNodeTerminal({ url: bridge.url, number: '1010', password: 'sandbox-1010' });
  await Promise.all([talker.connect(), listener.connect()]);
  await Promise.all([talker.register(), listener.register()]);
  talkCall = await talker.call('704');
  listenCall = await listener.call('704');
  await Promise.all([talkCall.answered(), listenCall.answered()]);
  const tone = new Uint8Array(640);
  const dv = new DataView(tone.buffer);
  for (let i = 0; i < 320; i++) dv.setInt16(i * 2, Math.round(8000 * Math.sin((2 * Math.PI * 500 * i) / 16000)), true);
  pacer = setInterval(() => talkCall.sendAudio(tone), 20);
  listenCall.on('audio', () => {
    const now = Date.now();
    if (lastHeard) maxGapMs = Math.max(maxGapMs, now - lastHeard);
    lastHeard = now;
    heard++;
  });
});

after(async () => {
  clearInterval(pacer);
  talker?.close();
  listener?.close();
  await bridge?.close();
});

test('wrong password: AUTH_FAILED (4403), no channel', async () => {
  const before = await settledChannelCount();
  const ws = await open();
  bindControl(ws, '1001', 'not-the-password');
  const c = await closed(ws);
  assert.equal(c.code, 4403);
  assert.match(c.reason, /^AUTH_FAILED: /);
  assert.equal(await channelCount(), before);
});

test('unknown terminal: AUTH_FAILED (4403), the same answer as a wrong password', async () => {
  const ws = await open();
  bindControl(ws, '4999', 'sandbox-4999');
  const c = await closed(ws);
  assert.equal(c.code, 4403);
  assert.match(c.reason, /^AUTH_FAILED: /);
});

test('binary data before bind: BIND_REQUIRED (4401)', async () => {
  const ws = await open();
  ws.send(Buffer.from('1000010100000000000000', 'hex'));
  const c = await closed(ws);
  assert.equal(c.code, 4401);
  assert.match(c.reason, /^BIND_REQUIRED: /);
});

test('a first message that is not a bind: BIND_REQUIRED (4401); bad JSON: BAD_MESSAGE (4400)', async () => {
  const ws = await open();
  ws.send(JSON.stringify({ type: 'call', to: '700' }));
  assert.equal((await closed(ws)).code, 4401);
  const ws2 = await open();
  ws2.send('{"type":');
  assert.equal((await closed(ws2)).code, 4400);
});

test('no bind within the bind timeout: BIND_TIMEOUT (4408)', async () => {
  const ws = await open();
  const started = Date.now();
  const c = await closed(ws);
  assert.equal(c.code, 4408);
  assert.match(c.reason, /^BIND_TIMEOUT: /);
  assert.ok(Date.now() - started >= 350, 'not before the timeout');
});

test('media connection with an unknown token: TOKEN_INVALID (4404)', async () => {
  const before = await settledChannelCount();
  const ws = await open();
  ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number: '1009', callId: talkCall.id, token: 'AAAAAAAAAAAAAAAAAAAAAAAA' }));
  const c = await closed(ws);
  assert.equal(c.code, 4404);
  assert.match(c.reason, /^TOKEN_INVALID: /);
  assert.equal(await channelCount(), before);
});

test('a reused media token: TOKEN_INVALID (4404), the first audio connection keeps working', async () => {
  const ws = await open();
  bindControl(ws, '1008', 'sandbox-1008');
  assert.equal((await nextText(ws)).type, 'bound');
  ws.send(JSON.stringify({ type: 'register', id: 1 }));
  assert.equal((await nextText(ws)).type, 'registered');
  ws.send(JSON.stringify({ type: 'call', id: 2, to: '705' }));
  const calling = (await nextText(ws)) as { callId: string; media: { audio: { token: string } } };
  const bind = JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number: '1008', callId: calling.callId, token: calling.media.audio.token });
  const audio = await open();
  audio.send(bind);
  assert.equal((await nextText(audio)).type, 'bound');
  const again = await open();
  again.send(bind);
  const c = await closed(again);
  assert.equal(c.code, 4404);
  assert.equal(audio.readyState, WebSocket.OPEN, 'the legitimate audio connection is untouched');
  // a token for one terminal cannot bind another terminal's call either
  const other = await open();
  other.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number: '1009', callId: calling.callId, token: calling.media.audio.token }));
  assert.equal((await closed(other)).code, 4404);
  ws.close();
  await closed(audio);
  assert.deepEqual(await waitNoChannels((l) => l.includes(`${calling.callId}-`)), [], 'closing the control connection ended the call');
});

test('oversized, malformed and text frames on an audio connection are refused with their codes', async () => {
  const t = createNodeTerminal({ url: bridge.url, number: '1007', password: 'sandbox-1007' });
  await t.connect();
  await t.register();
  const cases: Array<[string, Uint8Array | string, number]> = [];
  const big = new Uint8Array(5000);
  writeFrameHeader(big, 0, 1, 0, 0, 0);
  cases.push(['frame over maxAudioFrameBytes', big, 4413]);
  cases.push(['message over maxMessageBytes', new Uint8Array(300000), 1009]);
  const badVersion = new Uint8Array(FRAME_HEADER_BYTES + 640);
  badVersion[0] = 0x20;
  cases.push(['bad version', badVersion, 4410]);
  const wrongCodec = new Uint8Array(FRAME_HEADER_BYTES + 160);
  writeFrameHeader(wrongCodec, 0, 0, 0, 0, 0);
  cases.push(['codec not the call', wrongCodec, 4410]);
  cases.push(['text on a media connection', '{"type":"hangup"}', 4410]);
  for (const [what, data, code] of cases) {
    const call = await t.call('705', { codecs: ['L16/16000'] });
    const ended = call.ended();
    const errored = new Promise<string>((resolve) => call.once('error', (e) => resolve(e.code)));
    call.sendRaw(data);
    const info = await ended;
    assert.equal(info.reason, 'media_lost', what);
    const errCode = await Promise.race([errored, new Promise<string>((r) => setTimeout(() => r('none'), 2000))]);
    assert.equal(errCode, code === 1009 ? 'FRAME_TOO_LARGE' : code === 4413 ? 'FRAME_TOO_LARGE' : 'BAD_FRAME', what);
    assert.deepEqual(await waitNoChannels((l) => l.includes(`${call.id}-`)), [], `${what}: no channel left`);
  }
  t.close();
});

test('the call in progress went on undisturbed through all of the above', async () => {
  assert.equal(talkCall.state, 'answered');
  assert.equal(listenCall.state, 'answered');
  const before = heard;
  await new Promise((r) => setTimeout(r, 1000));
  const perSecond = heard - before;
  assert.ok(perSecond >= 45, `the listener still receives audio: ${perSecond} frames in the last second`);
  // audio all along: no gap in what the listener received while the bad input was refused
  assert.ok(maxGapMs < 250, `longest gap in the listener's audio: ${maxGapMs} ms (${heard} frames in all)`);
});
