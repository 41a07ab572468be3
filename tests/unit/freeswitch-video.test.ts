// Video on FreeSWITCH (issue 5): a real BridgeServer with the FreeSwitchDriver against the FAKE
// FreeSWITCH (FakeEslServer replaying real ESL transcripts) and FakeSofia, a fake mod_sofia and
// passthrough video conference. Never run against a live FreeSWITCH: this checks what the bridge
// sends and does (originate, SIP leg, RTP, keyframe requests), not FreeSWITCH's behaviour.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import { isH264Keyframe } from '../../plugin/rtp/h264.ts';
import { h264AccessUnits, probeVideo, sendMedia } from '../helpers/video.ts';
import { registeredTerminal, startFreeSwitchBridge, until, wait, type Cleanup } from '../helpers/freeswitch.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-fs-video-'));
const cleanup: Cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const hash = (x: Uint8Array): string => createHash('sha1').update(x).digest('hex');

const startAll = () => startFreeSwitchBridge({ users: Object.fromEntries(['1001', '1002', '1003'].map((n) => [n, `pw-${n}`])), rooms: ['3000', '3001', '3002', '3003'] }, cleanup);
const terminal = (url: string, number: string) => registeredTerminal(url, number, `pw-${number}`, cleanup);

/** A terminal's media loop (tests/helpers/video.ts), stopped after the test in any case. */
function media(call: CallSession, aus: Uint8Array[], talking: () => boolean): { stop(): void; requests(): number } {
  const loop = sendMedia(call, aus, talking);
  cleanup.push(() => loop.stop());
  return loop;
}

test('FreeSWITCH video room: A\'s H.264 reaches B (ffprobe decodes it at A\'s size), a newcomer gets a keyframe within 2 s', async () => {
  const { fs, url } = await startAll();
  // a long keyframe interval (4 s): a picture within 2 s needs the keyframe request path
  const aus = h264AccessUnits(join(dir, 'a.h264'), 'testsrc', '320x240', 6, 60);
  const bus = h264AccessUnits(join(dir, 'b.h264'), 'smptebars', '176x144', 6, 60);
  const fromA = new Set(aus.filter((x) => !isH264Keyframe(x)).map(hash));
  const fromB = new Set(bus.filter((x) => !isH264Keyframe(x)).map(hash));
  const [ta, tb] = [await terminal(url, '1001'), await terminal(url, '1002')];

  const ca = await ta.call('3001', { video: ['H264/90000'] });
  await ca.answered();
  assert.equal(ca.videoCodec?.name, 'H264/90000');
  const ma = media(ca, aus, () => true);
  await wait(500);

  // the originate the bridge sent: FreeSWITCH dials our SIP leg from the sofia profile, u-law and H.264 only
  const originate = fs.originates.at(-1)!;
  assert.match(originate, /^originate \{[^}]*absolute_codec_string=\^\^:PCMU:H264[^}]*\}sofia\/confmux\/confmux-[^@\s]+@127\.0\.0\.1:\d+ 3001 XML default$/);
  assert.match(originate, /confmux_content=0/);

  const recorded: Uint8Array[] = [];
  let seen = '';
  let boundAt = 0;
  let firstKeyMs = -1;
  const cb = await tb.call('3001', { video: ['H264/90000'] });
  cb.on('video', (f, key) => {
    if (firstKeyMs < 0 && key) firstKeyMs = Date.now() - boundAt;
    if (firstKeyMs >= 0) recorded.push(new Uint8Array(f));
    if (!key) seen += fromA.has(hash(f)) ? 'a' : fromB.has(hash(f)) ? 'b' : '?';
  });
  await cb.answered();
  boundAt = Date.now();
  const mb = media(cb, bus, () => false);
  const list = fs.operator('conference 3001 list');
  assert.match(list, /;sofia\/confmux\/confmux-[^;]+;[^;]+;Terminal 1001;1001;/);
  assert.match(list, /;Terminal 1002;1002;/);

  await wait(3000);
  const phaseA = seen;
  ma.stop();
  mb.stop();
  console.log(`B's first keyframe ${firstKeyMs} ms after answer; keyframe requests at A: ${ma.requests()}; frames B saw from A: ${phaseA.length}`);

  const file = join(dir, 'b-recorded.h264');
  writeFileSync(file, Buffer.concat(recorded));
  const p = probeVideo(file);
  assert.equal(p.width, 320);
  assert.equal(p.height, 240);
  assert.ok(p.frames >= 30, `frames decoded from B's recording: ${p.frames}`);
  assert.ok(firstKeyMs >= 0 && firstKeyMs <= 2000, `B's first keyframe within 2 s: ${firstKeyMs} ms`);
  assert.ok(ma.requests() >= 1, 'A was asked for a keyframe (RTCP PLI from the room, through a=rtcp on the video socket)');
  const count = (s: string, c: string): number => s.split(c).length - 1;
  assert.ok(count(phaseA, 'a') >= 30 && count(phaseA, 'b') === 0, `B sees A (and not itself) while A talks: ${phaseA}`);

  await Promise.all([ca.hangup(), cb.hangup()]);
  await until(() => fs.live.length === 0 && fs.sofia.members('3001').length === 0);
});

test('FreeSWITCH video room: when B talks, A receives B\'s video; the room\'s keyframe request (RTCP PLI, not rtcp-mux) reaches B', async () => {
  const { fs, url } = await startAll();
  const aus = h264AccessUnits(join(dir, 'a2.h264'), 'testsrc', '320x240', 4, 15);
  const bus = h264AccessUnits(join(dir, 'b2.h264'), 'smptebars', '176x144', 4, 15);
  const fromB = new Set(bus.filter((x) => !isH264Keyframe(x)).map(hash));
  const [ta, tb] = [await terminal(url, '1001'), await terminal(url, '1002')];
  const [ca, cb] = [await ta.call('3002', { video: ['H264/90000'] }), await tb.call('3002', { video: ['H264/90000'] })];
  await Promise.all([ca.answered(), cb.answered()]);
  let talker = 'a';
  let bAtA = 0;
  ca.on('video', (f, key) => {
    if (!key && fromB.has(hash(f))) bAtA++;
  });
  const [ma, mb] = [media(ca, aus, () => talker === 'a'), media(cb, bus, () => talker === 'b')];
  await wait(1500);
  const before = bAtA;
  // after the switch only the room asks B (the bridge's newcomer path asked at B's join)
  const bRequestsBefore = mb.requests();
  talker = 'b';
  await wait(2500);
  ma.stop();
  mb.stop();
  const member = fs.sofia.members('3002').find((m) => m.plis > 0 && fs.sofia.floor('3002') === m);
  console.log(`B's frames at A: while A talks ${before}, after B talks ${bAtA - before}; keyframe requests at B: before ${bRequestsBefore}, after ${mb.requests()}`);
  assert.equal(before, 0, 'A does not see B while A holds the floor');
  assert.ok(member, 'the room made B the floor holder and sent it a PLI');
  // the answer points RTCP at the video socket and accepts PLI and FIR, nothing it does not handle
  const fb = member.answer.split('\r\n').filter((l) => l.startsWith('a=rtcp'));
  assert.deepEqual(fb.slice(1), ['a=rtcp-fb:102 ccm fir', 'a=rtcp-fb:102 nack pli']);
  assert.match(fb[0]!, /^a=rtcp:\d+$/);
  assert.ok(mb.requests() > bRequestsBefore, 'the PLI sent to the SIP leg\'s a=rtcp port reached B\'s terminal as a keyframe request');
  assert.ok(bAtA - before >= 20, `A receives B's video once B talks: ${bAtA - before} frames`);
  await Promise.all([ca.hangup(), cb.hangup()]);
  await until(() => fs.live.length === 0);
});

test('FreeSWITCH content share: marked confmux_content=1, shown to the other participant (media inline on its control connection) while shared, gone after', async () => {
  const { fs, url } = await startAll();
  const camera = h264AccessUnits(join(dir, 'camera.h264'), 'testsrc', '320x240', 4, 15);
  const slides = h264AccessUnits(join(dir, 'slides.h264'), 'smptebars', '176x144', 4, 15);
  const fromSlides = new Set(slides.filter((x) => !isH264Keyframe(x)).map(hash));
  const [ta, tb] = [await terminal(url, '1001'), await terminal(url, '1002')];
  const ca = await ta.call('3003', { video: ['H264/90000'] });
  const cb = await tb.call('3003', { video: ['H264/90000'], inline: true });
  await Promise.all([ca.answered(), cb.answered()]);
  assert.equal(cb.inline, true);
  let contentFrames = 0;
  cb.on('video', (f, key) => {
    if (!key && fromSlides.has(hash(f))) contentFrames++;
  });
  const stops = [media(ca, camera, () => true), media(cb, camera, () => false)];
  await wait(1000);
  const before = contentFrames;
  const content = await ta.share(ca);
  await content.answered();
  const share = media(content, slides, () => false);
  await wait(2500);
  const during = contentFrames - before;
  const list = fs.operator('conference 3003 list');
  const originate = fs.originates.at(-1)!;
  share.stop();
  const ended = await content.hangup();
  await wait(1000);
  const afterStop = contentFrames;
  await wait(1000);
  for (const s of stops) s.stop();
  console.log(`content frames at the viewer: before ${before}, while shared ${during}, after stopping ${contentFrames - afterStop}`);
  assert.match(originate, /confmux_content=1/);
  assert.match(originate, /origination_caller_id_name='Terminal 1001 \(content\)'/);
  assert.equal((list.match(/;sofia\/confmux\//g) ?? []).length, 3, `two participants and the content leg:\n${list}`);
  assert.equal(before, 0, 'no content before sharing');
  assert.ok(during >= 20, `the viewer sees the shared content: ${during} frames`);
  assert.equal(contentFrames - afterStop, 0, 'no content once sharing stopped');
  assert.equal(ended.reason, 'normal');
  await Promise.all([ca.hangup(), cb.hangup()]);
  await until(() => fs.live.length === 0);
});

test('FreeSWITCH video call: kicked by the operator (BYE from FreeSWITCH) ends as kicked; VP8 is dialled as VP8; a missing room ends the call', async () => {
  const { fs, url } = await startAll();
  const t = await terminal(url, '1003');
  const call = await t.call('3001', { video: ['VP8/90000'] });
  await call.answered();
  assert.equal(call.videoCodec?.name, 'VP8/90000');
  assert.match(fs.originates.at(-1)!, /absolute_codec_string=\^\^:PCMU:VP8/);
  const member = fs.live.find((c) => c.conference === '3001')!;
  const ended = new Promise<{ reason: string }>((resolve) => call.once('hangup', resolve));
  assert.match(fs.operator(`conference 3001 kick ${member.memberId}`), /^\+OK kicked/);
  assert.equal((await ended).reason, 'kicked');
  await until(() => fs.live.length === 0 && fs.sofia.members('3001').length === 0);

  const missing = await t.call('3999', { video: ['H264/90000'] });
  const end = await new Promise<{ reason: string }>((resolve) => missing.once('hangup', resolve));
  assert.equal(end.reason, 'remote', 'answered by the SIP leg, then hung up by FreeSWITCH (NO_ROUTE_DESTINATION)');
  await until(() => fs.live.length === 0);
});

test('FreeSWITCH video call: a terminal flooding video far above limits.videoFramesPerSecond for long gets its video connection closed with RATE_LIMITED (4429)', async () => {
  const { url } = await startAll();
  const t = await terminal(url, '1002');
  const call = await t.call('3002', { video: ['VP8/90000'] });
  await call.answered();
  const refused = new Promise<string>((resolve) => call.once('error', (e: { code?: string }) => resolve(e.code ?? '?')));
  // 60 a second with a burst of 30 pass; the rest is dropped, and 10 seconds' worth (600) of drops
  // beyond what the rate refills closes the connection
  for (let i = 0; i < 1500; i++) call.sendVideo(new Uint8Array(100), i === 0, i * 1500);
  assert.equal(await Promise.race([refused, wait(5000).then(() => 'not closed')]), 'RATE_LIMITED');
});
