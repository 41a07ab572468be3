// The PBX's side (issue 3): presence the console shows, invitations from the console, hangup
// causes the dialplan sees, kick / hangup / mute from the console, DTMF both ways.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { readWav } from '../../bridge/media/wav.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import { ari, asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { CLI, channels, sandboxTerminal, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';
import { describeTones, dominantTone, sineWav, toneLevel } from '../helpers/tone.ts';
import { startPhone } from '../helpers/baresip.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-pbx-'));
let bridge: TestBridge;
const open: TerminalClient[] = [];

before(async () => {
  await ensureSandbox();
  // the sandbox dialplan invites terminals with Stasis(confmux,invite,N): this bridge is app confmux
  bridge = await startBridge({ asterisk: { app: 'confmux' }, limits: { heartbeatIntervalMs: 500, inviteTimeoutMs: 3000 } });
});
after(async () => {
  for (const t of open) t.close();
  await bridge?.close();
});

const terminal = (number: string, name?: string): Promise<TerminalClient> => sandboxTerminal(bridge, open, number, name);

/** The hint state `core show hints` shows for a terminal: Idle, InUse, Unavailable ... */
async function hintState(number: string): Promise<string> {
  const out = await asteriskRx('core show hints');
  const line = out.split('\n').find((l) => l.startsWith(`${number}@confmux-terminals`));
  return /State:(\S+)/.exec(line ?? '')?.[1] ?? 'none';
}

async function waitHint(number: string, state: string, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  for (;;) {
    const now = await hintState(number);
    if (now === state) return Date.now() - start;
    if (Date.now() - start > timeoutMs) assert.fail(`hint ${number}: ${now}, expected ${state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function globalVar(name: string): Promise<string> {
  const res = await ari(`/ari/asterisk/variable?variable=${encodeURIComponent(name)}`);
  if (res.status !== 200) return '';
  return ((await res.json()) as { value: string }).value;
}

/** Dials a terminal from the dialplan (confmux-invite-test) and returns DIALSTATUS/HANGUPCAUSE. */
async function dialFromPbx(number: string, timeoutMs = 15000): Promise<{ status: string; ms: number }> {
  // clear the previous result first: the dialplan's own reset runs only after originate returns
  await ari(`/ari/asterisk/variable?variable=CONFMUX_DIALSTATUS_${number}&value=`, { method: 'POST' });
  assert.equal(await globalVar(`CONFMUX_DIALSTATUS_${number}`), '');
  const started = Date.now();
  await asteriskRx(`channel originate Local/${number}@confmux-invite-test application Wait 1`);
  for (;;) {
    const v = await globalVar(`CONFMUX_DIALSTATUS_${number}`);
    if (v) return { status: v, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) assert.fail(`no DIALSTATUS for ${number}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function pace(call: CallSession, freq: number): () => void {
  const payload = new Uint8Array(call.codec.frameBytes);
  const rate = call.codec.sampleRate;
  let phase = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < payload.length / 2; i++) {
      const s = Math.round(8000 * Math.sin((2 * Math.PI * freq * phase++) / rate));
      payload[i * 2] = s & 0xff;
      payload[i * 2 + 1] = (s >> 8) & 0xff;
    }
    call.sendAudio(payload);
  }, 20);
  return () => clearInterval(timer);
}

test('presence: Idle when registered, InUse in a call, Unavailable when the connection drops', async () => {
  assert.equal(await hintState('1002'), 'Unavailable', 'a terminal never registered here shows Unavailable');
  const t = await terminal('1001', 'Alice');
  await waitHint('1001', 'Idle');
  const call = await t.call('700');
  await call.answered();
  await waitHint('1001', 'InUse');
  await call.hangup();
  await waitHint('1001', 'Idle');
  t.close();
  const ms = await waitHint('1001', 'Unavailable');
  console.log(`unavailable ${ms} ms after the terminal closed its connection`);
});

test('presence: a network cut is noticed by heartbeat within two intervals', async () => {
  const t = await terminal('1003');
  await waitHint('1003', 'Idle');
  // stop reading the socket: no more pongs, as if the network had gone
  const ws = (t as unknown as { ws: { _socket: { pause(): void } } }).ws;
  ws._socket.pause();
  const ms = await waitHint('1003', 'Unavailable', 3000);
  console.log(`unavailable ${ms} ms after the network cut (heartbeat 500 ms)`);
  assert.ok(ms <= 1500, `within 2 heartbeat intervals plus slack: ${ms} ms`);
});

test('a second login of the same number replaces the first session', async () => {
  const first = await terminal('1004');
  const closed = new Promise<string>((resolve) => first.once('closed', (err) => resolve(err?.code ?? 'none')));
  await terminal('1004');
  assert.equal(await closed, 'REPLACED');
  await waitHint('1004', 'Idle');
});

test('console originate rings an auto-answering terminal into room 700: a SIP phone and the terminal hear each other', async () => {
  const phoneWav = sineWav(join(dir, 'phone-1000.wav'), { freq: 1000, seconds: 16, sampleRate: 8000, amplitude: 0.3 });
  const phone = await startPhone({ dial: '700', sendWav: phoneWav, recordDir: dir, seconds: 16, name: 'pbx-phone' });
  try {
    await phone.established;
    const rec = join(dir, 'answered-1005.wav');
    const child = spawn(process.execPath, [CLI, 'terminal', '--url', bridge.url, '--number', '1005', '--password', 'sandbox-1005', '--name', 'Robot', 'answer', '--tone', '440', '--record', rec, '--seconds', '6', '--wait', '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await waitHint('1005', 'Idle', 10000);
    await asteriskRx('channel originate Local/1005@confmux-terminals extension 700@confmux-rooms');
    // the invited terminal is in the room, under its number
    let list = '';
    for (let i = 0; i < 30 && !/1005/.test(list); i++) {
      await new Promise((r) => setTimeout(r, 200));
      list = await asteriskRx('confbridge list 700');
    }
    assert.match(list, /Local\/1005@confmux-terminals-\S+;1\s.*1005/, `confbridge list 700:\n${list}`);
    assert.equal(await exited, 0, out);
    assert.match(out, /incoming call/);
    await phone.stop();
    const heard = readWav(rec);
    const dt = dominantTone(heard.samples, heard.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5.5 });
    const dp = dominantTone(readWav(phone.recordedWav()).samples, 8000, [440, 1000], { minMarginDb: 15 });
    console.log(`invited terminal heard: ${describeTones(dt)}\nphone heard: ${describeTones(dp)}`);
    assert.equal(dt.freq, 1000);
    assert.equal(dp.freq, 440);
  } finally {
    await phone.stop();
  }
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/1005@')), []);
});

test('the dialplan sees each answer: busy, declined, no answer, not registered (at once)', async () => {
  const t = await terminal('1006');
  const handler = { mode: 'busy' as 'busy' | 'declined' | 'ignore' };
  t.on('incoming', (inv) => {
    if (handler.mode !== 'ignore') inv.reject(handler.mode);
  });
  const busy = await dialFromPbx('1006');
  handler.mode = 'declined';
  const declined = await dialFromPbx('1006');
  handler.mode = 'ignore';
  const noAnswer = await dialFromPbx('1006');
  const unregistered = await dialFromPbx('1007');
  console.log(`DIALSTATUS/HANGUPCAUSE: busy ${busy.status}, declined ${declined.status}, no answer ${noAnswer.status} (${noAnswer.ms} ms), not registered ${unregistered.status} (${unregistered.ms} ms)`);
  assert.equal(busy.status, 'BUSY/17');
  assert.match(declined.status, /^[A-Z]+\/21$/);
  assert.equal(noAnswer.status, 'NOANSWER/19');
  assert.ok(noAnswer.ms >= 2500, 'no answer waits for the invite timeout (3 s here)');
  assert.equal(unregistered.status, 'CHANUNAVAIL/20');
  assert.ok(unregistered.ms < 1500, `not registered is answered at once: ${unregistered.ms} ms`);
  assert.deepEqual(await waitNoChannels((l) => /Local\/100[67]@/.test(l)), []);
});

test('confbridge kick and channel request hangup end the call and the terminal is told why', async () => {
  const t = await terminal('1008', 'Kickme');
  const call = await t.call('701');
  await call.answered();
  let list = '';
  for (let i = 0; i < 20 && !/1008/.test(list); i++) {
    await new Promise((r) => setTimeout(r, 100));
    list = await asteriskRx('confbridge list 701');
  }
  const chan = /^(Local\/701@confmux-rooms\S+;2)\s.*1008/m.exec(list)?.[1];
  assert.ok(chan, `the terminal is listed under its number:\n${list}`);
  await asteriskRx(`confbridge kick 701 ${chan}`);
  const kicked = await call.ended();
  assert.equal(kicked.reason, 'kicked');

  const call2 = await t.call('701');
  await call2.answered();
  const chan2 = (await channels()).find((l) => l.startsWith('Local/701@confmux-rooms') && l.includes(';2'))!.split('!')[0];
  await asteriskRx(`channel request hangup ${chan2}`);
  const hung = await call2.ended();
  assert.equal(hung.reason, 'remote');
  assert.match(hung.message ?? '', /PBX hung up/);
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/701@') || l.includes(`${call2.id}-`)), []);
});

test('confbridge mute stops the terminal reaching the phone until unmuted', async () => {
  const silence = sineWav(join(dir, 'silence.wav'), { freq: 1000, seconds: 16, sampleRate: 8000, amplitude: 0 });
  const phone = await startPhone({ dial: '702', sendWav: silence, recordDir: dir, seconds: 16, name: 'mute-phone' });
  try {
    await phone.established;
    const t0 = Date.now();
    const t = await terminal('1009');
    const call = await t.call('702');
    await call.answered();
    const stop = pace(call, 440);
    await new Promise((r) => setTimeout(r, 3000));
    const list = await asteriskRx('confbridge list 702');
    const chan = /^(Local\/702@confmux-rooms\S+;2)\s/m.exec(list)?.[1];
    assert.ok(chan, list);
    const muteAt = (Date.now() - t0) / 1000;
    await asteriskRx(`confbridge mute 702 ${chan}`);
    await new Promise((r) => setTimeout(r, 3000));
    const unmuteAt = (Date.now() - t0) / 1000;
    await asteriskRx(`confbridge unmute 702 ${chan}`);
    await new Promise((r) => setTimeout(r, 3000));
    stop();
    await call.hangup();
    await phone.stop();
    const rec = readWav(phone.recordedWav());
    const seg = (from: number, to: number) => toneLevel(rec.samples, rec.sampleRate, 440, { skipSeconds: from, untilSeconds: to });
    const before = seg(muteAt - 2, muteAt - 0.3);
    const muted = seg(muteAt + 0.5, unmuteAt - 0.3);
    const after = seg(unmuteAt + 0.7, unmuteAt + 2.5);
    console.log(`440 Hz at the phone: before mute ${before.db.toFixed(1)} dB, muted ${muted.db.toFixed(1)} dB, after unmute ${after.db.toFixed(1)} dB`);
    assert.ok(before.db > -30, 'heard before mute');
    assert.ok(muted.db < before.db - 30, 'not heard while muted');
    assert.ok(after.db > -30, 'heard again after unmute');
  } finally {
    await phone.stop();
  }
});

test('DTMF: the dialplan reads the terminal digits; the terminal receives the PBX digits; a room PIN works', async () => {
  const t = await terminal('1010');
  const reader = await t.call('790');
  await reader.answered();
  await new Promise((r) => setTimeout(r, 500));
  reader.sendDtmf('1234#');
  await reader.ended();
  assert.equal(await globalVar('CONFMUX_DTMF_1010'), '1234', 'Read() in the dialplan got the digits');

  const sender = await t.call('791');
  await sender.answered();
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(sender.digits, '42#', 'SendDTMF() digits reached the terminal');
  await sender.hangup();

  const room = await t.call('709');
  await room.answered();
  await new Promise((r) => setTimeout(r, 1500));
  assert.doesNotMatch(await asteriskRx('confbridge list 709'), /1010/, 'not in the room before the PIN');
  room.sendDtmf('4321#');
  let list = '';
  for (let i = 0; i < 40 && !/1010/.test(list); i++) {
    await new Promise((r) => setTimeout(r, 250));
    list = await asteriskRx('confbridge list 709');
  }
  assert.match(list, /1010/, 'in the PIN room after entering the PIN');
  await room.hangup();
});
