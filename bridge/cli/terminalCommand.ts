/**
 * `confmux terminal ... call <extension>` and `... answer`: a headless terminal. Registers, dials
 * (or waits for the PBX's invitation and answers it), sends a WAV (or a tone) as live audio paced
 * at 20 ms, records what it hears, hangs up after --seconds.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { splitAccessUnits } from '../media/h264Stream.ts';
import { isH264Keyframe } from '../../plugin/rtp/h264.ts';
import { codecByName } from '../protocol/codecs.ts';
import { decodePayload, encodePayload, resample } from '../media/pcm.ts';
import { readWav, writeWav } from '../media/wav.ts';
import { createNodeTerminal } from '../sdk/node.ts';
import type { CallSession, HangupInfo } from '../sdk/CallSession.ts';
import type { TerminalClient } from '../sdk/TerminalClient.ts';
import { TerminalError } from '../sdk/TerminalError.ts';

export interface TerminalCallOptions {
  url: string;
  number: string;
  password: string;
  name?: string;
  codec: string;
  send?: string;
  tone?: number;
  loop: boolean;
  record?: string;
  seconds: number;
  quiet: boolean;
  /** DTMF digits to send once the call is answered */
  dtmf?: string;
  /** H.264 elementary stream (Annex B) to send as video, looped, paced at --fps */
  sendVideo?: string;
  fps?: number;
  /** write the video received to this file (H.264 Annex B, e.g. for ffprobe / ffplay) */
  recordVideo?: string;
}

export interface TerminalAnswerOptions extends TerminalCallOptions {
  /** invitations to handle before exiting */
  count: number;
  /** give up waiting for an invitation after this many seconds (0: wait forever) */
  wait: number;
  /** refuse instead of answering */
  reject?: 'busy' | 'declined';
  /** let invitations ring without answering */
  ignore: boolean;
}

function toneSignal(freq: number, rate: number, seconds: number): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * freq * i) / rate));
  return out;
}

/** Sends `signal` in 20 ms payloads on a drift-free schedule until stop() or the signal ends. */
function pace(call: CallSession, signal: Int16Array | null, loop: boolean): { stop(): void } {
  const codec = call.codec;
  const samplesPerFrame = codec.sampleRate / 50;
  const out = new Uint8Array(codec.frameBytes);
  const silence = new Int16Array(samplesPerFrame);
  const start = performance.now();
  let frame = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor((performance.now() - start) / 20) + 1;
    while (frame < due) {
      let chunk: Int16Array = silence;
      if (signal && signal.length > 0) {
        let offset = frame * samplesPerFrame;
        if (loop) offset %= signal.length;
        if (offset + samplesPerFrame <= signal.length) chunk = signal.subarray(offset, offset + samplesPerFrame);
      }
      call.sendAudio(encodePayload(codec, chunk, out));
      frame++;
    }
    timer = setTimeout(tick, Math.max(0, start + frame * 20 - performance.now()));
  };
  tick();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

function sayer(quiet: boolean): (line: string) => void {
  return (line) => {
    if (!quiet) process.stdout.write(`${line}\n`);
  };
}

function prepare(o: TerminalCallOptions): { codecName: string; signalFor: (rate: number) => Int16Array | null } {
  const codec = codecByName(o.codec);
  if (!codec) throw Object.assign(new Error(`unknown codec ${o.codec}; use L16/16000 or PCMU/8000`), { code: 'USAGE' });
  const wav = o.send ? readWav(readFileSync(o.send)) : null;
  return {
    codecName: codec.name,
    signalFor: (rate) => (wav ? resample(wav.samples, wav.sampleRate, rate) : o.tone ? toneSignal(o.tone, rate, o.seconds + 1) : null),
  };
}

async function connect(o: TerminalCallOptions): Promise<TerminalClient> {
  const terminal = createNodeTerminal({ url: o.url, number: o.number, password: o.password, name: o.name });
  await terminal.connect();
  terminal.on('reconnecting', (err) => sayer(o.quiet)(`connection lost (${err.code}): resuming`));
  terminal.on('resumed', () => sayer(o.quiet)('resumed'));
  const reg = await terminal.register();
  sayer(o.quiet)(`registered ${reg.number} (${reg.name})`);
  return terminal;
}

/** Sends the access units of a file at `fps`, looping; a keyframe request jumps to the next IDR. */
function paceVideo(call: CallSession, aus: Uint8Array[], fps: number): { stop(): void } {
  const keyIdx = aus.map((au, i) => (isH264Keyframe(au) ? i : -1)).filter((i) => i >= 0);
  let n = 0;
  let pos = 0;
  let wantKey = false;
  call.on('keyframeRequest', () => {
    wantKey = true;
  });
  const start = performance.now();
  const interval = 1000 / fps;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    if (wantKey && keyIdx.length) {
      wantKey = false;
      pos = keyIdx.find((k) => k >= pos) ?? keyIdx[0]!;
    }
    const au = aus[pos % aus.length]!;
    call.sendVideo(au, isH264Keyframe(au), Math.round((n * 90000) / fps) >>> 0);
    pos = (pos + 1) % aus.length;
    n++;
    timer = setTimeout(tick, Math.max(0, start + n * interval - performance.now()));
  };
  tick();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/** An answered call: talk for --seconds (or until the far end hangs up), record, hang up. */
async function talk(call: CallSession, o: TerminalCallOptions, signal: Int16Array | null, record?: string): Promise<HangupInfo> {
  const say = sayer(o.quiet);
  const videoIn: Uint8Array[] = [];
  const answeredAt = performance.now();
  let firstKey = -1;
  call.on('video', (frame, keyframe) => {
    if (keyframe && firstKey < 0) {
      firstKey = performance.now() - answeredAt;
      say(`video: first keyframe ${Math.round(firstKey)} ms after answer`);
    }
    if (o.recordVideo && (firstKey >= 0 || keyframe)) videoIn.push(Uint8Array.from(frame));
  });
  const video = call.videoCodec && o.sendVideo ? paceVideo(call, splitAccessUnits(readFileSync(o.sendVideo)), o.fps ?? 15) : null;
  if (call.videoCodec && !o.sendVideo) call.requestKeyframe();
  const heard: Int16Array[] = [];
  call.on('audio', (payload) => {
    if (record) heard.push(decodePayload(call.codec, payload));
  });
  call.on('dtmf', (digit) => say(`dtmf ${digit}`));
  let ended: HangupInfo | null = null;
  call.on('hangup', (info) => {
    ended = info;
  });
  const sender = pace(call, signal, o.loop);
  if (o.dtmf) setTimeout(() => call.sendDtmf(o.dtmf!), 500);
  await Promise.race([new Promise((r) => setTimeout(r, o.seconds * 1000)), call.ended()]);
  sender.stop();
  video?.stop();
  if (o.recordVideo) {
    writeFileSync(o.recordVideo, Buffer.concat(videoIn));
    say(`recorded ${videoIn.length} video frames to ${o.recordVideo}`);
  }
  const info: HangupInfo = ended ?? (await call.hangup());
  say(`hangup: ${info.reason}${info.cause !== undefined ? ` (cause ${info.cause})` : ''}; sent ${call.sent} frames, received ${call.received}`);
  if (record) {
    let total = 0;
    for (const h of heard) total += h.length;
    const all = new Int16Array(total);
    let at = 0;
    for (const h of heard) {
      all.set(h, at);
      at += h.length;
    }
    writeWav(record, call.codec.sampleRate, all);
    say(`recorded ${(total / call.codec.sampleRate).toFixed(2)} s to ${record}`);
  }
  return info;
}

const OK_REASONS = new Set(['normal', 'remote', 'kicked']);

export async function runTerminalCall(to: string, o: TerminalCallOptions): Promise<number> {
  const say = sayer(o.quiet);
  const { codecName, signalFor } = prepare(o);
  const terminal = await connect(o);
  try {
    const wantVideo = Boolean(o.sendVideo || o.recordVideo);
    const call = await terminal.call(to, wantVideo ? { codecs: [codecName], video: ['H264/90000'] } : { codecs: [codecName] });
    say(`calling ${to} (call ${call.id}, ${call.codec.name}${call.videoCodec ? ` + ${call.videoCodec.name}` : ''})`);
    if (wantVideo && !call.videoCodec) say('the bridge offered no video for this call: audio only');
    call.on('ringing', () => say('ringing'));
    await call.answered();
    say('answered');
    const info = await talk(call, o, signalFor(call.codec.sampleRate), o.record);
    return OK_REASONS.has(info.reason) ? 0 : 1;
  } finally {
    terminal.close();
  }
}

/** Waits for invitations from the PBX and answers (or rejects, or ignores) them. */
export async function runTerminalAnswer(o: TerminalAnswerOptions): Promise<number> {
  const say = sayer(o.quiet);
  const { codecName, signalFor } = prepare(o);
  const terminal = await connect(o);
  let failures = 0;
  try {
    for (let n = 1; n <= o.count; n++) {
      say('waiting for an invitation');
      const inv = await new Promise<import('../sdk/Invitation.ts').Invitation>((resolve, reject) => {
        const timer = o.wait > 0 ? setTimeout(() => reject(new TerminalError('TIMEOUT', `no invitation within ${o.wait} s`)), o.wait * 1000) : null;
        terminal.once('incoming', (i) => {
          if (timer) clearTimeout(timer);
          resolve(i);
        });
        terminal.once('closed', (err) => reject(err ?? new TerminalError('CONNECTION_CLOSED', 'connection closed')));
      });
      say(`incoming call ${inv.callId} from ${inv.from.name ? `"${inv.from.name}" ` : ''}${inv.from.number || 'unknown'}`);
      if (o.ignore) {
        const info = await new Promise<HangupInfo>((resolve) => inv.once('ended', resolve));
        say(`invitation ended: ${info.reason}`);
        continue;
      }
      if (o.reject) {
        inv.reject(o.reject);
        say(`rejected (${o.reject})`);
        continue;
      }
      // video when asked for (--send-video / --record-video) and the invitation offers H.264
      const wantVideo = Boolean(o.sendVideo || o.recordVideo) && inv.video.includes('H264/90000');
      const call = await inv.accept(wantVideo ? { codecs: [codecName], video: ['H264/90000'] } : { codecs: [codecName] });
      await call.answered();
      say('answered');
      // with --count > 1, each recording gets the call's number before the extension
      const record = o.record && o.count > 1 ? o.record.replace(/(\.wav)?$/i, `-${n}$1`) : o.record;
      const info = await talk(call, o, signalFor(call.codec.sampleRate), record);
      if (!OK_REASONS.has(info.reason)) failures++;
    }
  } finally {
    terminal.close();
  }
  return failures ? 1 : 0;
}
