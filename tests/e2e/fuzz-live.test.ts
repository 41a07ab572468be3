// Fuzzing a live bridge (issue 8): random and mutated control messages, binds and media frames from
// many connections. The bridge must not crash or reject unhandled, a call in progress goes on, no
// channel is left in Asterisk, and its heap comes back to its baseline. FUZZ_RUNS for longer runs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import WebSocket from 'ws';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { writeFrameHeader } from '../../bridge/protocol/frame.ts';
import { ensureSandbox } from '../helpers/sandbox.ts';
import { channels, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const runs = Number(process.env.FUZZ_RUNS ?? 150);

let bridge: TestBridge;
let talker: TerminalClient;
let call: CallSession;
let heard = 0;
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown): void => {
  unhandled.push(err);
};

before(async () => {
  await ensureSandbox();
  process.on('unhandledRejection', onUnhandled);
  bridge = await startBridge({ limits: { bindTimeoutMs: 300 } });
  talker = createNodeTerminal({ url: bridge.url, number: '1009', password: 'sandbox-1009' });
  await talker.connect();
  await talker.register();
  call = await talker.call('705');
  await call.answered();
  call.on('audio', () => heard++);
});
after(async () => {
  process.off('unhandledRejection', onUnhandled);
  talker?.close();
  await bridge?.close();
});

/** One random conversation on a fresh connection: a first message, then a few more, then close. */
const conversation = fc.record({
  first: fc.oneof(
    fc.string(),
    fc.uint8Array({ maxLength: 64 }),
    fc.constantFrom(
      '{"type":"bind","v":1,"kind":"control","number":"1001","password":"sandbox-1001"}',
      '{"type":"bind","v":1,"kind":"control","number":"1002","password":"wrong"}',
      '{"type":"bind","v":1,"kind":"audio","number":"1001","callId":"abc","token":"AAAAAAAAAAAAAAAAAAAAAAAA"}',
    ),
    fc.json(),
  ),
  rest: fc.array(
    fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 700 }),
      fc.constantFrom('{"type":"register"}', '{"type":"call","to":"705"}', '{"type":"call","to":"999"}', '{"type":"hangup","callId":"x"}', '{"type":"ping","id":1}', '{"type":"dtmf","callId":"x","digits":"1"}'),
      fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 640 })).map(([b0, codec, payload]) => {
        const f = new Uint8Array(10 + payload.length);
        writeFrameHeader(f, 0, codec, 0, 1, 2);
        f[0] = b0;
        f.set(payload, 10);
        return f;
      }),
    ),
    { maxLength: 6 },
  ),
  closeAfterMs: fc.integer({ min: 0, max: 150 }),
});

function play(c: { first: string | Uint8Array; rest: (string | Uint8Array)[]; closeAfterMs: number }): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(bridge.url);
    const done = (): void => resolve();
    ws.on('error', () => undefined);
    ws.on('close', done);
    ws.on('open', () => {
      ws.send(c.first);
      for (const m of c.rest) if (ws.readyState === WebSocket.OPEN) ws.send(m);
      setTimeout(() => ws.terminate(), c.closeAfterMs);
    });
    setTimeout(done, 3000);
  });
}

test('random traffic on a live bridge: no crash, the call goes on, nothing leaks', async () => {
  const before = (await channels()).filter((l) => l.includes('!confmux-')).length;
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const samples = fc.sample(conversation, { numRuns: runs, seed: Number(process.env.FUZZ_SEED ?? 42) });
  // a few at a time, as a crowd of bad clients would
  for (let i = 0; i < samples.length; i += 10) await Promise.all(samples.slice(i, i + 10).map(play));
  await new Promise((r) => setTimeout(r, 1500));
  // the fuzz may have placed calls to 705 as 1001: they end with their connections
  assert.deepEqual(await waitNoChannels((l) => l.includes('!confmux-') && !l.includes(call.id), 8000), [], 'no channel left but the call in progress');
  const res = await fetch(bridge.url.replace(/^ws/, 'http') + 'healthz');
  assert.equal(res.status, 200, 'the bridge still answers');
  assert.equal(call.state, 'answered', 'the call in progress went on');
  const heardBefore = heard;
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(heard - heardBefore >= 40, `the call still receives audio: ${heard - heardBefore} frames/s`);
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  console.log(`${samples.length} random conversations; channels of ours before ${before}; heap ${(heapBefore / 1e6).toFixed(1)} MB -> ${(heapAfter / 1e6).toFixed(1)} MB`);
  assert.ok(heapAfter < heapBefore + 20e6, 'heap back near its baseline');
});
