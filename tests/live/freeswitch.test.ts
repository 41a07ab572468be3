/**
 * Acceptance against a LIVE FreeSWITCH 1.10 (issue 4). Not part of `npm test`: FreeSWITCH cannot be
 * installed where confmux is built, so this file has NEVER been run against a real FreeSWITCH; it
 * is here for whoever accepts the driver on a machine that has one:
 *
 *   CONFMUX_LIVE_ESL=127.0.0.1:8021 CONFMUX_LIVE_ESL_PASSWORD=<event socket password> \
 *     npm run accept:freeswitch
 *
 * FreeSWITCH needs dialplan/freeswitch/ installed (the confmux-terminals context, event socket on
 * loopback) and two directory users for the terminals (default 1000 and 1001 with password 1234, as
 * in FreeSWITCH's vanilla configuration: CONFMUX_LIVE_USERS=1000:1234,1001:1234). The room is
 * CONFMUX_LIVE_ROOM (default 3000: vanilla's `conference` extensions 3000-3399) in the bridge's
 * freeswitch.context (CONFMUX_LIVE_CONTEXT, default `default`) and the profile
 * CONFMUX_LIVE_PROFILE (default `default`, as in `conference 3000@default`).
 *
 * What it checks, as an operator would: two terminals in the room each hear the other's tone and
 * not their own; `conference <room> list` shows both numbers; an `originate` towards
 * loopback/<n>/confmux-terminals rings a terminal, which answers and is listed in the room; a
 * `conference <room> kick` ends that terminal's call with reason `kicked`; no channel of the
 * bridge is left afterwards; with video (the sofia profile of dialplan/freeswitch/
 * sip_profile_confmux.xml started), B decodes A's H.264 at A's size. A SIP phone in the same room
 * is left to the person accepting (any phone registered to FreeSWITCH dialling the room hears both
 * tones).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../bridge/config.ts';
import { createLogger } from '../../bridge/logger.ts';
import { BridgeServer } from '../../bridge/server/BridgeServer.ts';
import { readWav } from '../../bridge/media/wav.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { Invitation } from '../../bridge/sdk/Invitation.ts';
import { FreeSwitchDriver } from '../../plugin/freeswitch/FreeSwitchDriver.ts';
import { NetEslLink } from '../../plugin/freeswitch/NetEslLink.ts';
import { describeTones, dominantTone } from '../helpers/tone.ts';
import { runCli } from '../helpers/bridge.ts';
import { makeH264, probeVideo } from '../helpers/video.ts';

const esl = process.env.CONFMUX_LIVE_ESL;
const skip = esl ? false : 'set CONFMUX_LIVE_ESL=host:port and CONFMUX_LIVE_ESL_PASSWORD to run against a live FreeSWITCH';
const [eslHost, eslPort] = (esl ?? '127.0.0.1:8021').split(':') as [string, string];
const password = process.env.CONFMUX_LIVE_ESL_PASSWORD ?? '';
const users = (process.env.CONFMUX_LIVE_USERS ?? '1000:1234,1001:1234').split(',').map((u) => u.split(':') as [string, string]);
const room = process.env.CONFMUX_LIVE_ROOM ?? '3000';
const context = process.env.CONFMUX_LIVE_CONTEXT ?? 'default';
const profile = process.env.CONFMUX_LIVE_PROFILE ?? 'default';
const dir = mkdtempSync(join(tmpdir(), 'confmux-live-fs-'));

let url = '';
let stop: () => Promise<void> = async () => undefined;
/** our own fs_cli: an ESL connection for the operator's commands */
let operator: NetEslLink | null = null;

before(async () => {
  if (skip) return;
  const config = loadConfig({
    env: {},
    overrides: {
      server: { host: '127.0.0.1', port: 0 },
      mediaServer: 'freeswitch',
      freeswitch: { host: eslHost, port: Number(eslPort), password, context },
      log: { level: process.env.CONFMUX_TEST_LOG ?? 'warn' },
    },
  });
  const log = createLogger(config.log.level);
  const driver = new FreeSwitchDriver({ config: config.freeswitch, log });
  await driver.start();
  const server = new BridgeServer(config, driver, log);
  const address = await server.listen();
  url = `ws://127.0.0.1:${address.port}/`;
  operator = new NetEslLink({ host: eslHost, port: Number(eslPort), password, events: [], requestTimeoutMs: 5000, log });
  await operator.connect();
  stop = async () => {
    await operator?.close();
    await server.close();
    await driver.close();
  };
});
after(() => stop());

async function until<T>(what: string, fn: () => Promise<T | null | false>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const list = (): Promise<string> => operator!.api(`conference ${room} list`).catch((err: Error) => err.message);

test('two terminals in the room each hear the other tone and not their own; conference list shows both', { skip }, async () => {
  const [[n1, p1], [n2, p2]] = users as [[string, string], [string, string]];
  const rec1 = join(dir, `t${n1}.wav`);
  const rec2 = join(dir, `t${n2}.wav`);
  const args = (n: string, p: string, extra: string[]): string[] => ['terminal', '--url', url, '--number', n, '--password', p, '--name', `Terminal ${n}`, 'call', room, ...extra];
  const listed = until('both terminals in conference list', async () => {
    const l = await list();
    return l.includes(n1) && l.includes(n2) ? l : null;
  }, 10000);
  const [a, b] = await Promise.all([
    runCli(args(n1, p1, ['--tone', '440', '--record', rec1, '--seconds', '6'])),
    runCli(args(n2, p2, ['--tone', '1000', '--record', rec2, '--seconds', '6', '--codec', 'PCMU/8000'])),
  ]);
  assert.equal(a.code, 0, a.stderr + a.stdout);
  assert.equal(b.code, 0, b.stderr + b.stdout);
  console.log(`conference ${room} list:\n${await listed}`);
  const w1 = readWav(rec1);
  const w2 = readWav(rec2);
  const d1 = dominantTone(w1.samples, w1.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
  const d2 = dominantTone(w2.samples, w2.sampleRate, [440, 1000], { skipSeconds: 1.5, untilSeconds: 5 });
  console.log(`${n1} heard: ${describeTones(d1)}\n${n2} heard: ${describeTones(d2)}`);
  assert.equal(d1.freq, 1000, `${n1} (sending 440 Hz) hears ${n2} at 1000 Hz`);
  assert.equal(d2.freq, 440, `${n2} (sending 1000 Hz) hears ${n1} at 440 Hz`);
});

test('an originate from the console rings a terminal; it answers, is in the room, and a kick ends its call as kicked', { skip }, async () => {
  const [n, p] = users[0]!;
  const t = createNodeTerminal({ url, number: n, password: p, name: `Terminal ${n}` });
  await t.connect();
  await t.register();
  try {
    const ringing = new Promise<Invitation>((resolve) => t.once('incoming', resolve));
    await operator!.api(`bgapi originate loopback/${n}/confmux-terminals &conference(${room}@${profile})`);
    const inv = await ringing;
    const call = await inv.accept({ codecs: ['PCMU/8000'] });
    await call.answered();
    const line = await until('the terminal in conference list', async () => (await list()).split('\n').find((l) => l.includes('loopback')) ?? null);
    console.log(`member: ${line}`);
    const ended = call.ended();
    await operator!.api(`conference ${room} kick ${line.split(';')[0]}`);
    assert.equal((await ended).reason, 'kicked');
    // nothing of this bridge's left: the calls' channels carry confmux_bridge
    await until('no confmux channel left', async () => !(await operator!.api('show channels like loopback')).includes(`/${n}`));
  } finally {
    t.close();
  }
});

test('video (issue 5): A\'s H.264 reaches B through the room (ffprobe decodes it at A\'s size); both are sofia members of the room', { skip }, async () => {
  // needs sip_profiles/confmux.xml loaded and started (dialplan/freeswitch/sip_profile_confmux.xml)
  const [[n1, p1], [n2, p2]] = users as [[string, string], [string, string]];
  const aVideo = makeH264(join(dir, 'a.h264'), 'testsrc', '320x240', 4, 30);
  const rec = join(dir, 'b-recorded.h264');
  const args = (n: string, p: string, extra: string[]): string[] => ['terminal', '--url', url, '--number', n, '--password', p, '--name', `Terminal ${n}`, 'call', room, ...extra];
  const listed = until('both terminals in conference list as sofia members', async () => {
    const l = await list();
    return (l.match(/;sofia\/confmux\//g) ?? []).length >= 2 ? l : null;
  }, 10000);
  const [a, b] = await Promise.all([
    runCli(args(n1, p1, ['--tone', '440', '--send-video', aVideo, '--fps', '15', '--seconds', '8'])),
    runCli(args(n2, p2, ['--record-video', rec, '--seconds', '8'])),
  ]);
  assert.equal(a.code, 0, a.stderr + a.stdout);
  assert.equal(b.code, 0, b.stderr + b.stdout);
  console.log(`conference ${room} list:\n${await listed}`);
  const v = probeVideo(rec);
  console.log(`B's recording: ${v.width}x${v.height}, ${v.frames} frames`);
  assert.equal(v.width, 320);
  assert.equal(v.height, 240);
  assert.ok(v.frames >= 40, `frames decoded: ${v.frames}`);
});
