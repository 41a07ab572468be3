// Video through the one port (issue 5): terminals in a ConfBridge video room (710-719) send and
// receive H.264; ffmpeg makes the pictures and ffprobe decodes what arrives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import type { Invitation } from '../../bridge/sdk/Invitation.ts';
import { splitAccessUnits } from '../../bridge/media/h264Stream.ts';
import { isH264Keyframe } from '../../plugin/rtp/h264.ts';
import { ari, asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { SILENCE, makeH264, probeVideo, sendMedia } from '../helpers/video.ts';
import { runCli, sandboxTerminal, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-video-'));
let bridge: TestBridge;
const open: TerminalClient[] = [];

/** An H.264 elementary stream made by ffmpeg in this run's folder. */
const makeVideo = (name: string, source: string, size: string, seconds: number, gop: number): string => makeH264(join(dir, name), source, size, seconds, gop);
const probe = probeVideo;

const terminal = (number: string): Promise<TerminalClient> => sandboxTerminal(bridge, open, number);

/** A terminal's media loop (tests/helpers/video.ts); returns its stop. */
const media = (call: CallSession, aus: Uint8Array[], talking: () => boolean): (() => void) => sendMedia(call, aus, talking).stop;

before(async () => {
  await ensureSandbox();
  bridge = await startBridge();
});
after(async () => {
  for (const t of open) t.close();
  await bridge?.close();
});

test('CLI terminals in video room 710: B records A\'s video, ffprobe decodes it at A\'s size and rate', async () => {
  const aVideo = makeVideo('a.h264', 'testsrc', '320x240', 4, 30);
  const rec = join(dir, 'b-recorded.h264');
  const args = (n: string, extra: string[]): string[] => ['terminal', '--url', bridge.url, '--number', n, '--password', `sandbox-${n}`, 'call', '710', ...extra];
  const [a, b] = await Promise.all([
    runCli(args('1001', ['--tone', '440', '--send-video', aVideo, '--fps', '15', '--seconds', '8'])),
    runCli(args('1002', ['--record-video', rec, '--seconds', '8'])),
  ]);
  assert.equal(a.code, 0, a.stderr + a.stdout);
  assert.equal(b.code, 0, b.stderr + b.stdout);
  assert.match(a.stdout, /\+ H264\/90000/);
  const p = probe(rec);
  console.log(`B's recording: ${p.width}x${p.height}, ${p.frames} frames decoded; ${b.stdout.match(/video: first keyframe \d+ ms/)?.[0]}`);
  assert.equal(p.width, 320);
  assert.equal(p.height, 240);
  // about 8 s at 15 fps, less what passed before both were in and the first keyframe arrived
  assert.ok(p.frames >= 60 && p.frames <= 130, `frames decoded: ${p.frames}`);
  assert.deepEqual(await waitNoChannels((l) => l.includes('confmux-media')), []);
});

test('the room shows the talker: a viewer sees A while A talks, then B once B talks', async () => {
  const aus = splitAccessUnits(readFileSync(makeVideo('talker-a.h264', 'testsrc', '320x240', 4, 15)));
  const bus = splitAccessUnits(readFileSync(makeVideo('talker-b.h264', 'smptebars', '176x144', 4, 15)));
  const hash = (x: Uint8Array): string => createHash('sha1').update(x).digest('hex');
  const fromA = new Set(aus.filter((x) => !isH264Keyframe(x)).map(hash));
  const fromB = new Set(bus.filter((x) => !isH264Keyframe(x)).map(hash));
  const [ta, tb, tc] = [await terminal('1003'), await terminal('1004'), await terminal('1005')];
  const [ca, cb, cc] = [await ta.call('711', { video: ['H264/90000'] }), await tb.call('711', { video: ['H264/90000'] }), await tc.call('711', { video: ['H264/90000'] })];
  await Promise.all([ca.answered(), cb.answered(), cc.answered()]);
  let talker = 'a';
  let seen = '';
  cc.on('video', (f, key) => {
    if (key) return;
    const h = hash(f);
    seen += fromA.has(h) ? 'a' : fromB.has(h) ? 'b' : '?';
  });
  const stops = [media(ca, aus, () => talker === 'a'), media(cb, bus, () => talker === 'b'), media(cc, aus.slice(0, 1), () => false)];
  await new Promise((r) => setTimeout(r, 4000));
  const phaseA = seen;
  seen = '';
  talker = 'b';
  await new Promise((r) => setTimeout(r, 4000));
  const phaseB = seen;
  for (const s of stops) s();
  console.log(`viewer while A talks: ${phaseA}\nviewer after B starts: ${phaseB}`);
  const count = (s: string, c: string): number => s.split(c).length - 1;
  assert.ok(count(phaseA.slice(-15), 'a') >= 12, 'the viewer sees A while A talks');
  assert.ok(count(phaseB.slice(-15), 'b') >= 12, 'the viewer sees B after B started talking');
  await Promise.all([ca.hangup(), cb.hangup(), cc.hangup()]);
});

test('a terminal joining a room in progress gets a decodable picture within 2 s (keyframe request)', async () => {
  // keyframes only every 10 s: only the request path can make the newcomer's picture come fast
  const aus = splitAccessUnits(readFileSync(makeVideo('sparse.h264', 'testsrc', '320x240', 12, 150)));
  const [ta, tb] = [await terminal('1006'), await terminal('1007')];
  const ca = await ta.call('712', { video: ['H264/90000'] });
  await ca.answered();
  let requests = 0;
  ca.on('keyframeRequest', () => requests++);
  const stopA = media(ca, aus, () => true);
  await new Promise((r) => setTimeout(r, 2500)); // past A's first keyframe
  const cb = await tb.call('712', { video: ['H264/90000'] });
  const joined = performance.now();
  const firstKey = new Promise<number>((resolve) => cb.on('video', (_f, key) => key && resolve(performance.now() - joined)));
  const ms = await Promise.race([firstKey, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
  stopA();
  console.log(`newcomer's first keyframe ${Math.round(ms)} ms after its call was bound; keyframe requests A received: ${requests}`);
  assert.ok(requests >= 1, 'the sender was asked for a keyframe');
  assert.ok(ms >= 0 && ms <= 2000, `first keyframe within 2 s: ${Math.round(ms)} ms`);
  await Promise.all([ca.hangup(), cb.hangup()]);
  assert.match(await asteriskRx('confbridge list 712'), /No conference|^\s*$|Channel/);
});

test('presentation content: shared in room 720, the other participant sees it, and it stops when sharing stops', async () => {
  const camera = splitAccessUnits(readFileSync(makeVideo('camera.h264', 'testsrc', '320x240', 4, 15)));
  const slides = splitAccessUnits(readFileSync(makeVideo('slides.h264', 'smptebars', '176x144', 4, 15)));
  const hash = (x: Uint8Array): string => createHash('sha1').update(x).digest('hex');
  const fromSlides = new Set(slides.filter((x) => !isH264Keyframe(x)).map(hash));
  const [ta, tb] = [await terminal('1008'), await terminal('1009')];
  const ca = await ta.call('720', { video: ['H264/90000'] });
  const cb = await tb.call('720', { video: ['H264/90000'] });
  await Promise.all([ca.answered(), cb.answered()]);
  let contentFrames = 0;
  let otherFrames = 0;
  cb.on('video', (f, key) => {
    if (key) return;
    if (fromSlides.has(hash(f))) contentFrames++;
    else otherFrames++;
  });
  const stops = [media(ca, camera, () => true), media(cb, camera, () => false)];
  await new Promise((r) => setTimeout(r, 1500));
  const before = contentFrames;
  const content = await ta.share(ca);
  await content.answered();
  const stopShare = media(content, slides, () => false);
  await new Promise((r) => setTimeout(r, 3000));
  const during = contentFrames - before;
  const list = await asteriskRx('confbridge list 720');
  stopShare();
  const ended = await content.hangup();
  await new Promise((r) => setTimeout(r, 1500));
  const afterStop = contentFrames;
  await new Promise((r) => setTimeout(r, 1500));
  for (const s of stops) s();
  console.log(`content frames at the viewer: before sharing ${before}, while shared ${during}, after stopping ${contentFrames - afterStop}; other frames ${otherFrames}`);
  assert.equal(before, 0, 'no content before sharing');
  assert.ok(during >= 25, `the viewer sees the shared content: ${during} frames in 3 s`);
  assert.equal(contentFrames - afterStop, 0, 'no content once sharing stopped');
  assert.equal(ended.reason, 'normal');
  assert.equal((list.match(/PJSIP\/confmux-media/g) ?? []).length, 3, `two participants and the content leg:\n${list}`);
  await Promise.all([ca.hangup(), cb.hangup()]);
  assert.deepEqual(await waitNoChannels((l) => l.includes('confmux-media')), []);
});

test('all media on the control connection (inline): the same audio and video checks pass', async () => {
  const { writeFileSync } = await import('node:fs');
  const { decodePayload } = await import('../../bridge/media/pcm.ts');
  const { dominantTone, describeTones } = await import('../helpers/tone.ts');
  const aus = splitAccessUnits(readFileSync(makeVideo('inline-a.h264', 'testsrc', '320x240', 4, 15)));
  const [ta, tb] = [await terminal('1010'), await terminal('1001')];
  const ca = await ta.call('713', { video: ['H264/90000'], inline: true });
  const cb = await tb.call('713', { video: ['H264/90000'], inline: true });
  await Promise.all([ca.answered(), cb.answered()]);
  assert.equal(ca.inline, true);
  assert.equal(ca.videoCodec?.name, 'H264/90000');
  const videoAtB: Uint8Array[] = [];
  const audioAtB: Int16Array[] = [];
  let keySeen = false;
  cb.on('video', (f, key) => {
    keySeen ||= key;
    if (keySeen) videoAtB.push(Uint8Array.from(f));
  });
  cb.on('audio', (p) => audioAtB.push(decodePayload(cb.codec, p)));
  const stopA = media(ca, aus, () => true);
  const stopB = setInterval(() => cb.sendAudio(SILENCE), 20);
  await new Promise((r) => setTimeout(r, 5000));
  stopA();
  clearInterval(stopB);
  const rec = join(dir, 'inline-b.h264');
  writeFileSync(rec, Buffer.concat(videoAtB));
  const p = probe(rec);
  const samples = Int16Array.from(audioAtB.flatMap((a) => Array.from(a)));
  const tones = dominantTone(samples, cb.codec.sampleRate, [400, 1000], { skipSeconds: 1.5 });
  console.log(`inline: B decoded ${p.width}x${p.height} x ${p.frames} frames; B heard ${describeTones(tones)}`);
  assert.equal(p.width, 320);
  assert.ok(p.frames >= 40, `frames decoded: ${p.frames}`);
  assert.equal(tones.freq, 400, 'B hears A over the control connection');
  await Promise.all([ca.hangup(), cb.hangup()]);
  // the control connections stay up after their inline calls end
  await ta.ping();
  await tb.ping();
});

test('VP8 through video room 716: B receives A\'s VP8 frames whole, ffprobe decodes them', async () => {
  const { writeFileSync } = await import('node:fs');
  const ivf = join(dir, 'a.ivf');
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15', '-t', '4', '-c:v', 'libvpx', '-b:v', '300k', '-g', '15', '-deadline', 'realtime', '-f', 'ivf', ivf]);
  // IVF: a 32-byte file header, then per frame a 12-byte header (size, 64-bit pts) and the frame
  const file = readFileSync(ivf);
  const frames: Uint8Array[] = [];
  for (let pos = file.readUInt16LE(6); pos + 12 <= file.length; ) {
    const size = file.readUInt32LE(pos);
    frames.push(file.subarray(pos + 12, pos + 12 + size));
    pos += 12 + size;
  }
  const { isVp8Keyframe } = await import('../../plugin/rtp/vp8.ts');
  const [ta, tb] = [await terminal('1002'), await terminal('1003')];
  const ca = await ta.call('716', { video: ['VP8/90000'] });
  const cb = await tb.call('716', { video: ['VP8/90000'] });
  await Promise.all([ca.answered(), cb.answered()]);
  assert.equal(ca.videoCodec?.name, 'VP8/90000');
  const got: Uint8Array[] = [];
  let key = false;
  cb.on('video', (f, k) => {
    key ||= k;
    if (key) got.push(Uint8Array.from(f));
  });
  let i = 0;
  let wantKey = false;
  ca.on('keyframeRequest', () => (wantKey = true));
  const timer = setInterval(() => {
    if (wantKey) {
      wantKey = false;
      while (!isVp8Keyframe(frames[i % frames.length]!)) i++;
    }
    const f = frames[i % frames.length]!;
    ca.sendVideo(f, isVp8Keyframe(f), (i * 6000) >>> 0);
    i++;
  }, 1000 / 15);
  await new Promise((r) => setTimeout(r, 4000));
  clearInterval(timer);
  await Promise.all([ca.hangup(), cb.hangup()]);
  // write what B got as IVF for ffprobe
  const header = Buffer.alloc(32);
  header.write('DKIF', 0);
  header.writeUInt16LE(32, 6);
  header.write('VP80', 8);
  header.writeUInt16LE(320, 12);
  header.writeUInt16LE(240, 14);
  header.writeUInt32LE(15, 16);
  header.writeUInt32LE(1, 20);
  header.writeUInt32LE(got.length, 24);
  const parts: Buffer[] = [header];
  got.forEach((f, n) => {
    const fh = Buffer.alloc(12);
    fh.writeUInt32LE(f.length, 0);
    fh.writeBigUInt64LE(BigInt(n), 4);
    parts.push(fh, Buffer.from(f));
  });
  const rec = join(dir, 'b.ivf');
  writeFileSync(rec, Buffer.concat(parts));
  const p = probe(rec);
  console.log(`VP8: B kept ${got.length} frames from its first keyframe; ffprobe decoded ${p.width}x${p.height} x ${p.frames}`);
  assert.equal(p.width, 320);
  assert.ok(p.frames >= 20, `frames decoded: ${p.frames}`);
});

test('DTMF in a call with video: the dialplan reads the terminal digits, the terminal receives the PBX digits (RFC 4733 on the SIP leg)', async () => {
  const t = await terminal('1018');
  await ari(`/ari/asterisk/variable?variable=CONFMUX_DTMF_1018&value=`, { method: 'POST' });
  const reader = await t.call('790', { video: ['H264/90000'] });
  await reader.answered();
  await new Promise((r) => setTimeout(r, 500));
  reader.sendDtmf('5678#');
  await reader.ended();
  const res = await ari('/ari/asterisk/variable?variable=CONFMUX_DTMF_1018');
  assert.equal(((await res.json()) as { value: string }).value, '5678', 'Read() in the dialplan got the digits');

  const sender = await t.call('791', { video: ['H264/90000'] });
  await sender.answered();
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(sender.digits, '42#', 'SendDTMF() digits reached the terminal, each once');
  await sender.hangup();
});

test('a video call from one terminal to another through the PBX: the invitation offers video, each sees the other', async (t) => {
  // invitations reach the bridge whose app is "confmux" (Stasis(confmux,invite,N) in the sandbox dialplan)
  const pbx = await startBridge({ asterisk: { app: 'confmux' } });
  t.after(() => pbx.close());
  const mk = async (number: string): Promise<TerminalClient> => {
    const c = createNodeTerminal({ url: pbx.url, number, password: `sandbox-${number}` });
    await c.connect();
    await c.register();
    open.push(c);
    return c;
  };
  const [ta, tb] = [await mk('1016'), await mk('1017')];
  const ausA = splitAccessUnits(readFileSync(makeVideo('p2p-a.h264', 'testsrc', '320x240', 6, 15)));
  const ausB = splitAccessUnits(readFileSync(makeVideo('p2p-b.h264', 'smptebars', '176x144', 6, 15)));
  const ringing = new Promise<Invitation>((resolve) => tb.once('incoming', resolve));
  const ca = await ta.call('1017', { video: ['H264/90000'] });
  const inv = await ringing;
  assert.equal(inv.from.number, '1016');
  assert.ok(inv.video.includes('H264/90000'), `the invitation offers video: ${JSON.stringify(inv.video)}`);
  const cb = await inv.accept({ video: ['H264/90000'] });
  assert.equal(cb.videoCodec?.name, 'H264/90000');
  await Promise.all([ca.answered(), cb.answered()]);
  const atA: Uint8Array[] = [];
  const atB: Uint8Array[] = [];
  let audioAtB = 0;
  ca.on('video', (f) => atA.push(Uint8Array.from(f)));
  cb.on('video', (f) => atB.push(Uint8Array.from(f)));
  cb.on('audio', () => audioAtB++);
  const [stopA, stopB] = [media(ca, ausA, () => true), media(cb, ausB, () => true)];
  await new Promise((r) => setTimeout(r, 4000));
  stopA();
  stopB();
  const fileA = join(dir, 'p2p-at-a.h264');
  const fileB = join(dir, 'p2p-at-b.h264');
  writeFileSync(fileA, Buffer.concat(atA));
  writeFileSync(fileB, Buffer.concat(atB));
  const [seenByA, seenByB] = [probe(fileA), probe(fileB)];
  console.log(`B decoded ${seenByB.frames} frames ${seenByB.width}x${seenByB.height}; A decoded ${seenByA.frames} frames ${seenByA.width}x${seenByA.height}; audio frames at B: ${audioAtB}`);
  assert.deepEqual([seenByB.width, seenByB.height], [320, 240], "B sees A's picture");
  assert.deepEqual([seenByA.width, seenByA.height], [176, 144], "A sees B's picture");
  assert.ok(seenByB.frames >= 20 && seenByA.frames >= 20, 'pictures keep coming (15 fps sent for 4 s)');
  assert.ok(audioAtB > 100, 'audio flows too');
  const ended = cb.ended();
  await ca.hangup();
  assert.ok(['remote', 'normal'].includes((await ended).reason));
  assert.deepEqual(await waitNoChannels((l) => l.includes(`${ca.id}-`) || l.includes(`${cb.id}-`) || l.startsWith('Local/1017@')), []);
});
