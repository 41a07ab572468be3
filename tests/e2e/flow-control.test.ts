// Flow control on Asterisk's default media transport (chan_websocket), against the real Asterisk:
// a terminal that sends faster than real time fills its channel's queue (1,000 frames); Asterisk
// says MEDIA_XOFF at 900 frames and MEDIA_XON at 800. The native media pump hands the call back to
// JavaScript on the text, and the call goes back on the pump after MEDIA_XON.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { ulawDecode, ulawEncode } from '../../bridge/media/g711.ts';
import { ensureSandbox } from '../helpers/sandbox.ts';
import { sandboxTerminal, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';
import { describeTones, dominantTone, sineSamples } from '../helpers/tone.ts';

let bridge: TestBridge;
const open: TerminalClient[] = [];

before(async () => {
  await ensureSandbox();
  // the rate limit lifted, so that a terminal may outrun real time tenfold
  bridge = await startBridge({ limits: { audioFramesPerSecond: 1000 } });
});
after(async () => {
  for (const t of open) t.close();
  await bridge?.close();
});

const terminal = (number: string): Promise<TerminalClient> => sandboxTerminal(bridge, open, number);

const handbacks = async (): Promise<number> => Number(/confmux_media_pump_handbacks_total (\d+)/.exec(await bridge.server.metrics.registry.metrics())?.[1] ?? 0);

test('chan_websocket flow control: MEDIA_XOFF takes the call off the pump, MEDIA_XON puts it back; the room still hears the tone', async () => {
  const talker = await terminal('1001');
  const listener = await terminal('1002');
  const a = await talker.call('708', { codecs: ['PCMU/8000'] });
  await a.answered();
  const b = await listener.call('708', { codecs: ['PCMU/8000'] });
  await b.answered();
  const heard: number[] = [];
  b.on('audio', (p) => {
    for (const byte of Buffer.from(p)) heard.push(ulawDecode(byte));
  });
  const deadline = Date.now() + 5000;
  while (bridge.server.pumpedCalls !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(bridge.server.pumpedCalls, 2, 'both calls on the pump (chan_websocket legs)');
  const before = await handbacks();

  // 440 Hz in PCMU, 20 ms a frame
  const tone = Buffer.from(Array.from(sineSamples({ freq: 440, seconds: 60, amplitude: 0.3, fadeMs: 0 }), ulawEncode));
  let next = 0;
  const frame = (): Buffer => {
    const at = (next++ % 3000) * 160;
    return tone.subarray(at, at + 160);
  };
  // five frames every 10 ms (500 a second where Asterisk plays 50; each write 100 ms of audio, so
  // that the pump's stale-audio trimming, server.mediaPumpStaleMs, keeps them all): the queue passes
  // 900 frames after about 2 s. Until the pump has handed the call back, at most 8 s.
  let minPumped = 2;
  const burst = setInterval(() => {
    for (let i = 0; i < 5; i++) a.sendAudio(frame());
    minPumped = Math.min(minPumped, bridge.server.pumpedCalls);
  }, 10);
  const until = Date.now() + 8000;
  while ((await handbacks()) === before && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 200));
  clearInterval(burst);
  assert.ok((await handbacks()) > before, 'the pump handed the call back (MEDIA_XOFF)');
  assert.equal(minPumped, 1, "the talker's call left the pump; the listener's stayed");

  // then real time: the queue drains below 800, Asterisk says MEDIA_XON, the call goes back on the pump
  const paced = setInterval(() => a.sendAudio(frame()), 20);
  try {
    const back = Date.now() + 8000;
    while (bridge.server.pumpedCalls !== 2 && Date.now() < back) await new Promise((r) => setTimeout(r, 50));
    assert.equal(bridge.server.pumpedCalls, 2, 'the talker is back on the pump after MEDIA_XON');
    const from = heard.length;
    await new Promise((r) => setTimeout(r, 2000));
    const lately = heard.slice(from);
    assert.ok(lately.length >= 8000 * 1.5, `the listener kept hearing the room: ${lately.length} samples in 2 s`);
    const d = dominantTone(lately, 8000, [440, 1000]);
    console.log(`listener heard, back on the pump: ${describeTones(d)}`);
    assert.equal(d.freq, 440, "the listener hears the talker's tone");
  } finally {
    clearInterval(paced);
  }
  await a.hangup();
  await b.hangup();
  const left = await waitNoChannels((l) => l.includes(bridge.app) || l.includes('708@confmux-rooms'));
  assert.deepEqual(left, [], 'no channel left after hangup');
});
