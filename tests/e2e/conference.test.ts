// Terminals talk in a real Asterisk ConfBridge room through the bridge (issue 2).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWav } from '../../bridge/media/wav.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import { asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { channels, runCli, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';
import { describeTones, dominantTone, sineWav } from '../helpers/tone.ts';
import { startPhone } from '../helpers/baresip.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-conf-'));
let bridge: TestBridge;

before(async () => {
  await ensureSandbox();
  bridge = await startBridge();
});
after(async () => {
  await bridge?.close();
});

function terminalArgs(number: string, room: string, extra: string[]): string[] {
  return ['terminal', '--url', bridge.url, '--number', number, '--password', `sandbox-${number}`, '--name', `Terminal ${number}`, 'call', room, ...extra];
}

test('two CLI terminals in room 703 each hear the other tone, not their own', async () => {
  const rec1 = join(dir, 't1001.wav');
  const rec2 = join(dir, 't1002.wav');
  const seen: Promise<string> = (async () => {
    // while both are in, the room lists two participants
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const list = await asteriskRx('confbridge list 703');
      if ((list.match(/Local\/703@confmux-rooms/g) ?? []).length >= 2) return list;
    }
    return await asteriskRx('confbridge list 703');
  })();
  // chan_websocket carries each call in the terminal's own codec: the native media pump relays both
  let pumped = 0;
  const watch = setInterval(() => (pumped = Math.max(pumped, bridge.server.pumpedCalls)), 100);
  const [a, b] = await Promise.all([
    runCli(terminalArgs('1001', '703', ['--tone', '440', '--record', rec1, '--seconds', '6'])),
    runCli(terminalArgs('1002', '703', ['--tone', '1000', '--record', rec2, '--seconds', '6', '--codec', 'PCMU/8000'])),
  ]).finally(() => clearInterval(watch));
  assert.equal(pumped, 2, 'both calls on the native media pump (chan_websocket legs)');
  assert.equal(a.code, 0, a.stderr + a.stdout);
  assert.equal(b.code, 0, b.stderr + b.stdout);
  assert.match(a.stdout, /answered/);
  const list = await seen;
  assert.equal((list.match(/Local\/703@confmux-rooms/g) ?? []).length, 2, `confbridge list 703:\n${list}`);

  const w1 = readWav(rec1);
  const w2 = readWav(rec2);
  assert.equal(w1.sampleRate, 16000);
  assert.equal(w2.sampleRate, 8000);
  const d1 = dominantTone(w1.samples, w1.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
  const d2 = dominantTone(w2.samples, w2.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
  console.log(`1001 heard: ${describeTones(d1)}\n1002 heard: ${describeTones(d2)}`);
  assert.equal(d1.freq, 1000, '1001 (sending 440 Hz) hears 1002 at 1000 Hz');
  assert.equal(d2.freq, 440, '1002 (sending 1000 Hz) hears 1001 at 440 Hz');

  const left = await waitNoChannels((l) => l.includes(bridge.app) || l.includes('confmux-rooms'));
  assert.deepEqual(left, [], 'no channel of the calls is left after hangup');
});

test('a SIP phone (baresip) in room 700 hears the terminal, and the terminal hears the phone', async () => {
  const phoneWav = sineWav(join(dir, 'phone-1000.wav'), { freq: 1000, seconds: 14, sampleRate: 8000, amplitude: 0.3 });
  const phone = await startPhone({ dial: '700', sendWav: phoneWav, recordDir: dir, seconds: 14, name: 'phone-a' });
  try {
    await phone.established;
    const rec = join(dir, 't1003.wav');
    const r = await runCli(terminalArgs('1003', '700', ['--tone', '440', '--record', rec, '--seconds', '7']));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    await phone.stop();
    const heardByTerminal = readWav(rec);
    const dt = dominantTone(heardByTerminal.samples, heardByTerminal.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 6 });
    const heardByPhone = readWav(phone.recordedWav());
    // the phone's recording spans its whole call; the terminal talked during part of it
    const dp = dominantTone(heardByPhone.samples, heardByPhone.sampleRate, [440, 1000], { minMarginDb: 15 });
    console.log(`terminal heard: ${describeTones(dt)}\nphone heard:    ${describeTones(dp)}`);
    assert.equal(dt.freq, 1000, 'the terminal hears the phone at 1000 Hz');
    assert.equal(dp.freq, 440, 'the phone hears the terminal at 440 Hz');
  } finally {
    await phone.stop();
  }
  assert.deepEqual(await waitNoChannels((l) => l.includes(bridge.app) || l.includes('confmux-rooms')), []);
});

test('the PBX ends the call (channel request hangup): the terminal is told, no channel is left', async () => {
  const terminal = createNodeTerminal({ url: bridge.url, number: '1004', password: 'sandbox-1004' });
  await terminal.connect();
  await terminal.register();
  const call = await terminal.call('701');
  await call.answered();
  const mine = (await channels()).filter((l) => l.includes(`${call.id}-`));
  assert.ok(mine.length >= 2, `the call's channels exist: ${mine.join('\n')}`);
  const local2 = (await channels()).find((l) => l.startsWith('Local/701@confmux-rooms') && l.includes(';2'));
  assert.ok(local2, 'the room participant channel exists');
  await asteriskRx(`channel request hangup ${local2.split('!')[0]}`);
  const info = await call.ended();
  assert.equal(info.reason, 'remote');
  assert.deepEqual(await waitNoChannels((l) => l.includes(`${call.id}-`) || l.startsWith('Local/701@')), []);
  terminal.close();
});

test('a wrong extension ends the call with not_found and leaves nothing behind', async () => {
  const terminal = createNodeTerminal({ url: bridge.url, number: '1005', password: 'sandbox-1005' });
  await terminal.connect();
  await terminal.register();
  const call = await terminal.call('999');
  const info = await call.ended();
  assert.equal(info.reason, 'not_found', JSON.stringify(info));
  assert.deepEqual(await waitNoChannels((l) => l.includes(`${call.id}-`)), []);
  terminal.close();
});

test('UDP RTP transport (u-law to Asterisk): L16 and PCMU terminals hear each other', async () => {
  const rtpBridge = await startBridge({ asterisk: { mediaTransport: 'rtp' } });
  try {
    const rec1 = join(dir, 'rtp1006.wav');
    const rec2 = join(dir, 'rtp1007.wav');
    const args = (n: string, extra: string[]): string[] => ['terminal', '--url', rtpBridge.url, '--number', n, '--password', `sandbox-${n}`, 'call', '702', ...extra];
    // the native media pump relays both: the PCMU terminal's audio as it is, the L16/16000 one's
    // converted to and from u-law (the same bytes as AudioConverter); both meet in the conference
    let pumped = 0;
    const watch = setInterval(() => (pumped = Math.max(pumped, rtpBridge.server.pumpedCalls)), 100);
    const [a, b] = await Promise.all([
      runCli(args('1006', ['--tone', '440', '--record', rec1, '--seconds', '6'])),
      runCli(args('1007', ['--tone', '1000', '--record', rec2, '--seconds', '6', '--codec', 'PCMU/8000'])),
    ]).finally(() => clearInterval(watch));
    assert.equal(pumped, 2, 'both calls on the native media pump, the L16 one converted there (npm run build:native)');
    assert.equal(rtpBridge.server.pumpedCalls, 0, 'the pump let go of the ended call');
    assert.equal(a.code, 0, a.stderr + a.stdout);
    assert.equal(b.code, 0, b.stderr + b.stdout);
    const w1 = readWav(rec1);
    const w2 = readWav(rec2);
    const d1 = dominantTone(w1.samples, w1.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
    const d2 = dominantTone(w2.samples, w2.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
    console.log(`rtp 1006 heard: ${describeTones(d1)}\nrtp 1007 heard: ${describeTones(d2)}`);
    assert.equal(d1.freq, 1000);
    assert.equal(d2.freq, 440);
    assert.deepEqual(await waitNoChannels((l) => l.includes(rtpBridge.app) || l.startsWith('Local/702@')), []);
  } finally {
    await rtpBridge.close();
  }
});
