// Proves the Asterisk sandbox and the SIP phone harness with real programs:
// Asterisk 22 in the sandbox chroot, two baresip phones in ConfBridge room 700.
// Run as root:  node --import tsx --test tests/e2e/sandbox.test.ts
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readWav } from '../../bridge/media/wav.ts';
import { startPhone, type Phone } from '../helpers/baresip.ts';
import { ari, asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { describeTones, dominantTone, sineWav } from '../helpers/tone.ts';

const CALL_SECONDS = 8;
const A_FREQ = 1000;
const B_FREQ = 440;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(200);
  }
}

/** Channel names listed by `confbridge list <room>` (one row per participant). */
function participants(listOutput: string): string[] {
  return listOutput
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((c) => /^[A-Za-z][\w-]*\/\S+$/.test(c));
}

/** Channel names in `core show channels` output. */
function channelNames(out: string): string[] {
  return out
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((c) => c.includes('/'));
}

async function firstEmptyRoom(): Promise<string> {
  for (let r = 700; r <= 709; r++) {
    if (participants(await asteriskRx(`confbridge list ${r}`)).length === 0) return String(r);
  }
  throw new Error('all rooms 700..709 are in use');
}

describe('asterisk sandbox + baresip phones', () => {
  let work = '';

  before(async () => {
    const t0 = Date.now();
    const out = await ensureSandbox();
    console.log(`sandbox up in ${Date.now() - t0} ms\n${out.trim()}`);
    work = mkdtempSync(join(tmpdir(), 'confmux-e2e-sandbox-'));
  });

  after(() => {
    if (work && !process.env.KEEP_E2E_FILES) rmSync(work, { recursive: true, force: true });
  });

  test('ARI answers with the sandbox credentials', async () => {
    const res = await ari('/ari/asterisk/info');
    assert.equal(res.status, 200);
    const info = (await res.json()) as { system?: { version?: string } };
    assert.match(info.system?.version ?? '', /^22\./, 'Asterisk 22 expected');
    console.log(`ARI: Asterisk ${info.system?.version}`);
    const bad = await fetch('http://127.0.0.1:8088/ari/asterisk/info', {
      headers: { Authorization: 'Basic ' + Buffer.from('confmux:wrong').toString('base64') },
    });
    assert.equal(bad.status, 401, 'a wrong password must be refused');
  });

  test('two SIP phones in a room (700) hear each other and not themselves', { timeout: 90_000 }, async () => {
    const toneA = sineWav(join(work, 'a-1000.wav'), { freq: A_FREQ, seconds: CALL_SECONDS + 2, sampleRate: 8000, amplitude: 0.5 });
    const toneB = sineWav(join(work, 'b-440.wav'), { freq: B_FREQ, seconds: CALL_SECONDS + 2, sampleRate: 8000, amplitude: 0.5 });
    // The sandbox is shared (other test files, a developer's bridge): use room
    // 700 if it is empty, else the first empty room of 701..709, and judge
    // "no channels left" by our own channels when others are present.
    const room = process.env.CONFMUX_E2E_ROOM ?? (await firstEmptyRoom());
    const channelsBefore = channelNames(await asteriskRx('core show channels'));
    if (channelsBefore.length) console.log(`note: ${channelsBefore.length} channels of other users in the sandbox: ${channelsBefore.join(' ')}`);

    let ours: string[] = [];
    let a: Phone | undefined;
    let b: Phone | undefined;
    try {
      a = await startPhone({ name: 'a', dial: room, sendWav: toneA, recordDir: work, seconds: CALL_SECONDS });
      b = await startPhone({ name: 'b', dial: room, sendWav: toneB, recordDir: work, seconds: CALL_SECONDS });
      assert.notEqual(a.sipPort, b.sipPort);
      await Promise.all([a.established, b.established]);

      const list = await waitFor(`two participants in room ${room}`, 5000, async () => {
        const out = await asteriskRx(`confbridge list ${room}`);
        return participants(out).length === 2 ? out : undefined;
      });
      console.log(`confbridge list ${room}:\n${list.trimEnd()}`);
      ours = participants(list);
      assert.equal(ours.length, 2);

      // Both calls end on their own after CALL_SECONDS (baresip -t sends BYE).
      const codes = await Promise.all([a.exited, b.exited]);
      assert.deepEqual(codes, [0, 0], `baresip exit codes\n--- a:\n${a.log().slice(-2000)}\n--- b:\n${b.log().slice(-2000)}`);
    } finally {
      await Promise.all([a?.stop(), b?.stop()]);
    }

    // What each phone heard: the other's tone, not its own.
    for (const [phone, own, other] of [
      [a, A_FREQ, B_FREQ],
      [b, B_FREQ, A_FREQ],
    ] as const) {
      const path = phone.recordedWav();
      const wav = readWav(path);
      const seconds = wav.samples.length / wav.sampleRate;
      // Skip call setup and the other phone's join; stop before hang-up.
      const d = dominantTone(wav.samples, wav.sampleRate, [own, other], { skipSeconds: 2, untilSeconds: seconds - 0.5 });
      console.log(`phone ${phone.name} heard (${path}, ${seconds.toFixed(1)} s @ ${wav.sampleRate} Hz): ${describeTones(d)}`);
      assert.ok(seconds > CALL_SECONDS - 2, `recording too short: ${seconds} s`);
      assert.equal(d.freq, other, `phone ${phone.name} should hear ${other} Hz and not its own ${own} Hz`);
      const otherLevel = d.levels.find((l) => l.freq === other)!;
      assert.ok(otherLevel.presence > 0.9, `${other} Hz present in only ${Math.round(otherLevel.presence * 100)}% of blocks`);
      assert.ok(otherLevel.db > -30, `${other} Hz too quiet: ${otherLevel.db.toFixed(1)} dB`);
    }

    // After both hung up, Asterisk holds none of our channels (and, when
    // nobody else uses the sandbox, no channels at all).
    const channels = await waitFor('our channels gone after hang-up', 5000, async () => {
      const out = await asteriskRx('core show channels');
      return channelNames(out).some((c) => ours.includes(c)) ? undefined : out;
    });
    console.log(`core show channels:\n${channels.trimEnd()}`);
    const others = channelNames(channels);
    if (others.length === 0) assert.match(channels, /\b0 active channels?\b/);
    else console.log(`note: channels of other users remain: ${others.join(' ')}`);
    const left = await asteriskRx(`confbridge list ${room}`);
    assert.deepEqual(participants(left).filter((c) => ours.includes(c)), [], `room ${room} still holds our phones:\n${left}`);
  });
});
