// Bridge-level: a real BridgeServer with the FreeSwitchDriver against the FAKE FreeSWITCH, and
// SDK terminals. Verified against transcripts + scripted fake only, never a live FreeSWITCH.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { registeredTerminal, startFreeSwitchBridge, until, wait, type Cleanup } from '../helpers/freeswitch.ts';
import { ulawDecode, ulawEncode } from '../../bridge/media/g711.ts';
import { AudioConverter } from '../../bridge/media/AudioConverter.ts';
import { L16_16K, L16_8K } from '../../bridge/protocol/codecs.ts';
import type { Invitation } from '../../bridge/sdk/Invitation.ts';

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const startAll = (owns?: (number: string) => boolean) => startFreeSwitchBridge({ users: { '1001': 'pw-1001', '1002': 'pw-1002', '1003': 'pw-1003' }, rooms: ['3000'] }, cleanup, owns);
const terminal = (url: string, number: string, password: string) => registeredTerminal(url, number, password, cleanup);

test('a terminal registers (user_data), calls a conference, exchanges audio over unicast, hangs up', async () => {
  const { fs, url } = await startAll();
  await assert.rejects(terminal(url, '1001', 'wrong'), /AUTH_FAILED|password|auth/i);
  const t = await terminal(url, '1001', 'pw-1001');
  await until(() => fs.globals.get('confmux_presence_1001') === 'available');
  const call = await t.call('3000', { codecs: ['L16/16000'] });
  await call.answered();
  assert.equal(fs.globals.get('confmux_presence_1001'), 'in_use');
  assert.match(fs.operator('conference 3000 list'), /;Terminal 1001;1001;/);
  // 20 ms of L16/16000 up; the fake's FreeSWITCH side echoes the L16/8000 stream back down
  let frames = 0;
  let peak = 0;
  call.on('audio', (p: Uint8Array) => {
    frames++;
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    for (let i = 0; i + 1 < p.byteLength; i += 2) peak = Math.max(peak, Math.abs(v.getInt16(i, true)));
  });
  const payload = new Uint8Array(640);
  const view = new DataView(payload.buffer);
  for (let i = 0; i < 320; i++) view.setInt16(i * 2, Math.round(8000 * Math.sin((2 * Math.PI * 500 * i) / 16000)), true);
  for (let i = 0; i < 10; i++) {
    call.sendAudio(payload);
    await wait(20);
  }
  await until(() => frames >= 5);
  assert.ok(peak > 6000, `the tone came back (peak ${peak})`);
  const media = fs.live.find((c) => c.leg === 'A')!;
  assert.ok(media.received >= 5, 'FreeSWITCH side got the terminal audio');
  const info = await call.hangup();
  assert.equal(info.reason, 'normal');
  await until(() => fs.live.length === 0);
  await until(() => fs.globals.get('confmux_presence_1001') === 'available');
});

test('a PCMU terminal on the unicast leg: the native media pump converts u-law to and from L16 and the tone comes back', async () => {
  const { fs, url, server } = await startAll();
  const t = await terminal(url, '1003', 'pw-1003');
  const call = await t.call('3000', { codecs: ['PCMU/8000'] });
  await call.answered();
  let peak = 0;
  let frames = 0;
  call.on('audio', (p: Uint8Array) => {
    frames++;
    for (const b of p) peak = Math.max(peak, Math.abs(ulawDecode(b)));
  });
  const payload = new Uint8Array(160);
  for (let i = 0; i < 160; i++) payload[i] = ulawEncode(Math.round(8000 * Math.sin((2 * Math.PI * 500 * i) / 8000)));
  let pumped = 0;
  for (let i = 0; i < 10; i++) {
    call.sendAudio(payload);
    pumped = Math.max(pumped, server.pumpedCalls);
    await wait(20);
  }
  await until(() => frames >= 5);
  assert.equal(pumped, 1, 'the call on the native media pump');
  assert.ok(peak > 6000, `the tone came back (peak ${peak})`);
  await call.hangup();
  await until(() => fs.live.length === 0);
});

test('an L16/16000 terminal on the unicast leg: the native media pump resamples both ways, and what comes back is the JavaScript converters\' bytes', async () => {
  const { fs, url, server } = await startAll();
  const t = await terminal(url, '1003', 'pw-1003');
  const call = await t.call('3000', { codecs: ['L16/16000'] });
  await call.answered();
  await until(() => server.pumpedCalls === 1);
  const back: string[] = [];
  call.on('audio', (p: Uint8Array) => back.push(Buffer.from(p).toString('hex')));
  // the fake echoes the L16/8000 stream: each frame goes through both of AudioConverter's directions
  const up = new AudioConverter(L16_16K, L16_8K);
  const down = new AudioConverter(L16_8K, L16_16K);
  const want: string[] = [];
  for (let f = 0; f < 6; f++) {
    const payload = Buffer.alloc(640);
    for (let i = 0; i < 320; i++) payload.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 700 * (f * 320 + i)) / 16000)) - 3 * f, i * 2);
    want.push(Buffer.from(down.convert(up.convert(payload))).toString('hex'));
    call.sendAudio(payload);
    await wait(20);
  }
  await until(() => back.length >= want.length);
  assert.equal(server.pumpedCalls, 1, 'still on the pump');
  assert.deepEqual(back, want);
  await call.hangup();
  await until(() => fs.live.length === 0);
});

test('FreeSWITCH invites a terminal; it accepts, is in the room, and a kick ends its call as kicked', async () => {
  const { fs, url } = await startAll();
  const t = await terminal(url, '1002', 'pw-1002');
  const incoming = new Promise<Invitation>((resolve) => t.once('incoming', resolve));
  fs.invite('1002', '3000', { number: '2000', name: 'Operator' });
  const inv = await incoming;
  assert.deepEqual(inv.from, { number: '2000', name: 'Operator' });
  const call = await inv.accept({ codecs: ['PCMU/8000'] });
  await call.answered();
  await until(() => fs.operator('conference 3000 list').includes('Operator'));
  const id = fs.operator('conference 3000 list').split(';')[0]!;
  fs.operator(`conference 3000 kick ${id}`);
  const info = await call.ended();
  assert.equal(info.reason, 'kicked');
  await until(() => fs.live.length === 0);
});

test('workers: a worker leaves alone an invitation for a number routed to another worker (no refusal)', async () => {
  const { fs } = await startAll((n) => n !== '1001');
  const parked = fs.invite('1001', '3000', { number: '2000', name: 'Operator' });
  await wait(300);
  assert.equal(parked.hungUp, null, 'still parked, for the worker that holds 1001');
});

test('an invitation for a terminal not registered here is refused with SUBSCRIBER_ABSENT', async () => {
  const { fs } = await startAll();
  const parked = fs.invite('1001', '3000', { number: '2000', name: 'Operator' });
  await until(() => parked.hungUp !== null);
  assert.equal(parked.hungUp, 'SUBSCRIBER_ABSENT');
});
