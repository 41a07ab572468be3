// The browser terminal (issue 6) in headless Chromium against the real Asterisk sandbox: the page
// served by the bridge on its one port signs in, calls, is invited, talks and listens.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWav } from '../../bridge/media/wav.ts';
import { asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { channels, startBridge, waitNoChannels, type TestBridge } from '../helpers/bridge.ts';
import { describeTones, dominantTone, sineWav } from '../helpers/tone.ts';
import { startPhone } from '../helpers/baresip.ts';
import { openBrowser, signIn, stateText, type TestBrowser } from '../helpers/browser.ts';
import { h264AccessUnits, probeVideo } from '../helpers/video.ts';
import { isH264Keyframe } from '../../plugin/rtp/h264.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-browser-'));
const shots = join(dir, 'screenshots');
mkdirSync(shots, { recursive: true });
let bridge: TestBridge;
let browser: TestBrowser;

before(async () => {
  await ensureSandbox();
  // the sandbox invites terminals with Stasis(confmux,invite,N): this bridge is app confmux
  bridge = await startBridge({ asterisk: { app: 'confmux' } });
  // the fake microphone: 600 Hz, then silence (Chromium loops the file)
  const mic = sineWav(join(dir, 'mic-600.wav'), { freq: 600, seconds: 30, sampleRate: 16000, amplitude: 0.3 });
  browser = await openBrowser(mic);
});
after(async () => {
  await browser?.close();
  await bridge?.close();
});

const httpUrl = (): string => bridge.url.replace(/^ws/, 'http');

/**
 * A Node terminal's side of a video call with the page: keeps the page's video from its first
 * keyframe on, and sends silence plus `aus` at about 15 fps (jumping to a keyframe when asked).
 */
function nodeVideoPeer(call: CallSession, aus: Uint8Array[]): { fromPage: Uint8Array[]; keySeen: () => boolean; anyVideo: () => number; stop: () => void } {
  const fromPage: Uint8Array[] = [];
  let key = false;
  let any = 0;
  call.on('video', (f, k) => {
    any++;
    key ||= k;
    if (key) fromPage.push(Uint8Array.from(f));
  });
  let i = 0;
  call.on('keyframeRequest', () => {
    while (!isH264Keyframe(aus[i % aus.length]!)) i++;
  });
  const silence = new Uint8Array(640);
  const timer = setInterval(() => {
    call.sendAudio(silence);
    if (i % 3 === 0) {
      const au = aus[(i / 3) % aus.length]!;
      call.sendVideo(au, isH264Keyframe(au), (i * 2000) >>> 0);
    }
    i++;
  }, 22);
  return { fromPage, keySeen: () => key, anyVideo: () => any, stop: () => clearInterval(timer) };
}

/** A screenshot that is not blank: a real page has thousands of bytes of PNG and many colours. */
async function screenshot(name: string): Promise<void> {
  const png = await browser.page.screenshot();
  writeFileSync(join(shots, `${name}.png`), png);
  assert.ok(png.length > 8000, `${name}: ${png.length} bytes looks blank`);
}

test('wrong password: the page shows the documented error', async () => {
  const { page } = browser;
  await page.goto(httpUrl());
  await screenshot('signed-out');
  const state = await signIn(page, '1001', 'not-the-password');
  assert.match(state, /signed out/);
  assert.match((await page.textContent('#error')) ?? '', /AUTH_FAILED/);
  await screenshot('wrong-password');
});

test('the page talks with a SIP phone in room 700: each hears the other tone', async () => {
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1001', 'sandbox-1001', 'Browser'), /registered/);
  await screenshot('registered');
  const phoneWav = sineWav(join(dir, 'phone-1000.wav'), { freq: 1000, seconds: 14, sampleRate: 8000, amplitude: 0.3 });
  const phone = await startPhone({ dial: '700', sendWav: phoneWav, recordDir: dir, seconds: 14, name: 'browser-phone' });
  try {
    await phone.established;
    await page.fill('#dial', '700');
    await page.click('#call');
    await page.waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
    await new Promise((r) => setTimeout(r, 5000));
    const heard = await page.evaluate(() => {
      const c = (window as unknown as { confmux: { level(f: number): number; stats(): Record<string, unknown> } }).confmux;
      return { l1000: c.level(1000), l600: c.level(600), stats: c.stats() };
    });
    await screenshot('in-call');
    const list = await asteriskRx('confbridge list 700');
    await page.click('#hangup');
    await phone.stop();
    const fromPage = dominantTone(readWav(phone.recordedWav()).samples, 8000, [600, 1000], { minMarginDb: 15 });
    console.log(`page heard 1000 Hz at ${heard.l1000.toFixed(1)} dB, 600 Hz at ${heard.l600.toFixed(1)} dB; stats ${JSON.stringify(heard.stats)}\nphone heard: ${describeTones(fromPage)}`);
    assert.match(list, /1001/, 'the page is in the room under its number');
    assert.ok(heard.l1000 > -60 && heard.l1000 > heard.l600 + 20, 'the page hears the phone (1000 Hz) on its playback path');
    assert.equal(fromPage.freq, 600, "the phone hears the page's microphone (600 Hz)");
  } finally {
    await phone.stop();
  }
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/700@') || l.includes('!confmux-')), []);
});

test('an invitation from the Asterisk console rings the page; accepted, audio flows both ways', async () => {
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1002', 'sandbox-1002'), /registered/);
  await asteriskRx('channel originate Local/1002@confmux-terminals extension 701@confmux-rooms');
  await page.waitForSelector('#incoming', { state: 'visible', timeout: 5000 });
  assert.match(await stateText(page), /ringing/);
  await screenshot('ringing');
  await page.click('#accept');
  await page.waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
  const s1 = await page.evaluate(() => (window as unknown as { confmux: { stats(): { sent: number; received: number } } }).confmux.stats());
  await new Promise((r) => setTimeout(r, 2000));
  const s2 = await page.evaluate(() => (window as unknown as { confmux: { stats(): { sent: number; received: number } } }).confmux.stats());
  console.log(`in the invited call: sent ${s2.sent - s1.sent}, received ${s2.received - s1.received} frames in 2 s`);
  assert.ok(s2.sent - s1.sent >= 80, 'the page sends ~50 frames/s');
  assert.ok(s2.received - s1.received >= 80, 'the page receives ~50 frames/s');
  assert.match(await asteriskRx('confbridge list 701'), /1002/);
  await page.click('#hangup');
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/1002@') || l.startsWith('Local/701@')), []);
});

test("cutting the page's connection mid-call shows the lost state at once; it resumes, and a page that leaves leaves nothing", async () => {
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1003', 'sandbox-1003'), /registered/);
  await page.fill('#dial', '702');
  await page.click('#call');
  await page.waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
  assert.ok((await channels()).some((l) => l.startsWith('Local/702@')));
  // the network goes: the bridge's side of the page's connection is destroyed without a close frame
  const terminals = (bridge.server as unknown as { terminals: Map<string, { ws: { terminate(): void } }> }).terminals;
  const cutAt = Date.now();
  terminals.get('1003')!.ws.terminate();
  await page.waitForFunction(() => /connection lost/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 3000 });
  console.log(`the page showed "connection lost" ${Date.now() - cutAt} ms after the cut`);
  await screenshot('connection-lost');
  // it comes back by itself, in the same call
  await page.waitForFunction(() => /in call with 702/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
  console.log(`... and was back in its call ${Date.now() - cutAt} ms after the cut`);
  const s1 = await page.evaluate(() => (window as unknown as { confmux: { stats(): { received: number } } }).confmux.stats());
  await new Promise((r) => setTimeout(r, 1000));
  const s2 = await page.evaluate(() => (window as unknown as { confmux: { stats(): { received: number } } }).confmux.stats());
  assert.ok(s2.received - s1.received >= 40, 'audio flows again after the resume');
  // the person closes the page: the call ends at once, nothing is left in the PBX
  await page.goto('about:blank');
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/702@') || l.includes('!confmux-'), 5000), [], 'no channel left behind');
});

test('video room 715: the page camera reaches another terminal and its video is drawn in the page', async () => {
  const { writeFileSync: write } = await import('node:fs');
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const aus = h264AccessUnits(join(dir, 'node-cam.h264'), 'testsrc', '320x240', 4, 15);
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1004', 'sandbox-1004'), /registered/);
  await page.fill('#dial', '715');
  await page.check('#video-on');
  await page.click('#call');
  await page
    .waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 })
    .catch(async (err: Error) => assert.fail(`${err.message}: state ${await stateText(page)}, error ${await page.textContent('#error')}`));
  const node = createNodeTerminal({ url: bridge.url, number: '1005', password: 'sandbox-1005' });
  await node.connect();
  await node.register();
  const call = await node.call('715', { video: ['H264/90000'] });
  await call.answered();
  const peer = nodeVideoPeer(call, aus);
  const { fromPage } = peer;
  await new Promise((r) => setTimeout(r, 4000));
  const canvasHash = (): Promise<string> =>
    page.evaluate(() => {
      const c = document.getElementById('remote') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let h = 0;
      for (let k = 0; k < d.length; k += 97) h = (h * 31 + d[k]!) >>> 0;
      return `${c.width}x${c.height}:${h}`;
    });
  const h1 = await canvasHash();
  await new Promise((r) => setTimeout(r, 700));
  const h2 = await canvasHash();
  const stats = await page.evaluate(() => (window as unknown as { confmux: { stats(): Record<string, number> } }).confmux.stats());
  await screenshot('video-call');
  peer.stop();
  await call.hangup();
  node.close();
  await page.click('#hangup');
  const rec = join(dir, 'from-page.h264');
  write(rec, Buffer.concat(fromPage));
  const decoded = probeVideo(rec);
  const probe = `${decoded.width},${decoded.height},${decoded.frames}`;
  console.log(`B got ${fromPage.length} frames after a keyframe (key seen ${peer.keySeen()}, any ${peer.anyVideo()}); page video decoded by ffprobe: ${probe}; canvas ${h1} then ${h2}; page stats ${JSON.stringify(stats)}`);
  assert.ok(decoded.width > 0 && decoded.height > 0 && decoded.frames >= 20, 'the page camera reaches the other terminal as decodable H.264');
  assert.ok(stats.videoDrawn! >= 10, 'the page draws the video it receives');
  assert.notEqual(h1, h2, 'the canvas changes');
  assert.match(h1, /^320x240:/, "the canvas shows the other terminal's 320x240 picture");
});

test('a terminal video-calls the page through the PBX: the page rings "video call", accepts, and each sees the other', async () => {
  const { writeFileSync: write } = await import('node:fs');
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const aus = h264AccessUnits(join(dir, 'caller-cam.h264'), 'testsrc', '320x240', 4, 15);
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1007', 'sandbox-1007'), /registered/);
  await page.check('#video-on');
  const node = createNodeTerminal({ url: bridge.url, number: '1006', password: 'sandbox-1006' });
  await node.connect();
  await node.register();
  // 1007 in confmux-rooms: Dial(Local/1007@confmux-terminals) carries the caller's video formats
  const call = await node.call('1007', { video: ['H264/90000'] });
  await page.waitForSelector('#incoming', { state: 'visible', timeout: 5000 });
  assert.match((await page.textContent('#incoming-text')) ?? '', /video call from .*1006/i);
  await page.click('#accept');
  await page
    .waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 })
    .catch(async (err: Error) => assert.fail(`${err.message}: state ${await stateText(page)}, error ${await page.textContent('#error')}`));
  await call.answered();
  const peer = nodeVideoPeer(call, aus);
  const { fromPage } = peer;
  await new Promise((r) => setTimeout(r, 4000));
  const stats = await page.evaluate(() => (window as unknown as { confmux: { stats(): Record<string, number> } }).confmux.stats());
  await screenshot('video-invitation');
  peer.stop();
  await call.hangup();
  node.close();
  const rec = join(dir, 'from-invited-page.h264');
  write(rec, Buffer.concat(fromPage));
  const decoded = probeVideo(rec);
  const probe = `${decoded.width},${decoded.height},${decoded.frames}`;
  console.log(`the caller got ${fromPage.length} frames from the page (ffprobe: ${probe}); page stats ${JSON.stringify(stats)}`);
  assert.ok(decoded.width > 0 && decoded.height > 0 && decoded.frames >= 20, "the page's camera reaches the caller as decodable H.264");
  assert.ok(stats.videoDrawn! >= 10, "the page draws the caller's video");
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/1007@') || l.includes(`${call.id}-`), 5000), [], 'no channel left behind');
});

test('screen sharing from the page: another terminal in presentation room 721 sees it while shared', async () => {
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const { page } = browser;
  await page.goto(httpUrl());
  assert.match(await signIn(page, '1006', 'sandbox-1006'), /registered/);
  await page.fill('#dial', '721');
  await page.check('#video-on');
  await page.click('#call');
  await page.waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
  const node = createNodeTerminal({ url: bridge.url, number: '1007', password: 'sandbox-1007' });
  await node.connect();
  await node.register();
  const call = await node.call('721', { video: ['H264/90000'] });
  await call.answered();
  let frames = 0;
  call.on('video', () => frames++);
  const silence = new Uint8Array(640);
  const timer = setInterval(() => call.sendAudio(silence), 20);
  await new Promise((r) => setTimeout(r, 2000));
  const before = frames;
  await page.click('#share');
  await page.waitForFunction(() => document.getElementById('share')?.textContent === 'Stop sharing', undefined, { timeout: 5000 }).catch(async (err: Error) => assert.fail(`${err.message}: ${await page.textContent('#error')}`));
  await new Promise((r) => setTimeout(r, 3000));
  const during = frames - before;
  await screenshot('sharing');
  await page.click('#share');
  await new Promise((r) => setTimeout(r, 1500));
  const stoppedAt = frames;
  await new Promise((r) => setTimeout(r, 1500));
  const after = frames - stoppedAt;
  clearInterval(timer);
  const stats = await page.evaluate(() => (window as unknown as { confmux: { stats(): Record<string, number> } }).confmux.stats());
  console.log(`presentation room: frames at the other terminal before sharing ${before}, while shared ${during}, after stopping ${after}; page sent ${stats.contentSent} content frames`);
  await call.hangup();
  node.close();
  await page.click('#hangup');
  assert.equal(before, 0, 'nothing is shown before sharing in a presentation room');
  assert.ok(during >= 15, `the shared screen reaches the other terminal: ${during} frames in 3 s`);
  assert.equal(after, 0, 'nothing once sharing stopped');
});

test('through a TLS reverse proxy passing one port (nginx, https only): the page signs in and talks', async () => {
  const { execFileSync, spawn } = await import('node:child_process');
  const { createServer } = await import('node:net');
  const proxyDir = mkdtempSync(join(tmpdir(), 'confmux-nginx-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', join(proxyDir, 'key.pem'), '-out', join(proxyDir, 'cert.pem')], { stdio: 'ignore' });
  const port = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const upstream = bridge.url.replace(/^ws:\/\//, '').replace(/\/$/, '');
  writeFileSync(
    join(proxyDir, 'nginx.conf'),
    `pid ${proxyDir}/nginx.pid;
error_log ${proxyDir}/error.log;
daemon off;
events {}
http {
  access_log off;
  client_body_temp_path ${proxyDir}; proxy_temp_path ${proxyDir}; fastcgi_temp_path ${proxyDir}; uwsgi_temp_path ${proxyDir}; scgi_temp_path ${proxyDir};
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${proxyDir}/cert.pem;
    ssl_certificate_key ${proxyDir}/key.pem;
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_read_timeout 1h;
    }
  }
}
`,
  );
  const nginx = spawn('nginx', ['-c', join(proxyDir, 'nginx.conf'), '-p', proxyDir], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const { page } = browser;
    await page.context().clearCookies();
    // the browser trusts nothing here: accept the test certificate for this page only
    await page.goto(`https://127.0.0.1:${port}/`).catch(() => undefined);
    const secure = await page.evaluate(() => location.protocol);
    assert.equal(secure, 'https:');
    assert.match(await signIn(page, '1008', 'sandbox-1008'), /registered/);
    await page.fill('#dial', '706');
    await page.click('#call');
    await page.waitForFunction(() => /in call/.test(document.getElementById('state')?.textContent ?? ''), undefined, { timeout: 10000 });
    await new Promise((r) => setTimeout(r, 2000));
    const stats = await page.evaluate(() => (window as unknown as { confmux: { stats(): { sent: number; received: number } } }).confmux.stats());
    console.log(`through nginx (https://127.0.0.1:${port}, wss upgrades proxied): sent ${stats.sent}, received ${stats.received} frames`);
    assert.ok(stats.sent >= 80 && stats.received >= 80, 'audio flows both ways through the proxy');
    await page.click('#hangup');
  } finally {
    nginx.kill('SIGTERM');
  }
  assert.deepEqual(await waitNoChannels((l) => l.startsWith('Local/706@')), []);
});
