/**
 * `confmux terminal ... call <extension>`: a headless terminal. Registers, dials, sends a WAV (or
 * a tone) as live audio paced at 20 ms, records what it hears, hangs up after --seconds.
 */
import { readFileSync } from 'node:fs';
import { codecByName } from '../protocol/codecs.ts';
import { decodePayload, encodePayload, resample } from '../media/pcm.ts';
import { readWav, writeWav } from '../media/wav.ts';
import { createNodeTerminal } from '../sdk/node.ts';
import type { CallSession, HangupInfo } from '../sdk/CallSession.ts';

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

export async function runTerminalCall(to: string, o: TerminalCallOptions): Promise<number> {
  const say = (line: string): void => {
    if (!o.quiet) process.stdout.write(`${line}\n`);
  };
  const codec = codecByName(o.codec);
  if (!codec) throw Object.assign(new Error(`unknown codec ${o.codec}; use L16/16000 or PCMU/8000`), { code: 'USAGE' });
  let signal: Int16Array | null = null;
  if (o.send) {
    const wav = readWav(readFileSync(o.send));
    signal = resample(wav.samples, wav.sampleRate, codec.sampleRate);
  } else if (o.tone) signal = toneSignal(o.tone, codec.sampleRate, o.seconds + 1);

  const terminal = createNodeTerminal({ url: o.url, number: o.number, password: o.password, name: o.name });
  await terminal.connect();
  const reg = await terminal.register();
  say(`registered ${reg.number} (${reg.name})`);
  const call = await terminal.call(to, { codecs: [codec.name] });
  say(`calling ${to} (call ${call.id}, ${call.codec.name})`);
  const heard: Int16Array[] = [];
  call.on('audio', (payload) => {
    if (o.record) heard.push(decodePayload(call.codec, payload));
  });
  call.on('ringing', () => say('ringing'));
  let ended: HangupInfo | null = null;
  call.on('hangup', (info) => {
    ended = info;
  });
  try {
    await call.answered();
  } catch (err) {
    terminal.close();
    throw err;
  }
  say('answered');
  const sender = pace(call, signal, o.loop);
  await Promise.race([new Promise((r) => setTimeout(r, o.seconds * 1000)), call.ended()]);
  sender.stop();
  const info: HangupInfo = ended ?? (await call.hangup());
  say(`hangup: ${info.reason}${info.cause !== undefined ? ` (cause ${info.cause})` : ''}; sent ${call.sent} frames, received ${call.received}`);
  terminal.close();
  if (o.record) {
    let total = 0;
    for (const h of heard) total += h.length;
    const all = new Int16Array(total);
    let at = 0;
    for (const h of heard) {
      all.set(h, at);
      at += h.length;
    }
    writeWav(o.record, call.codec.sampleRate, all);
    say(`recorded ${(total / call.codec.sampleRate).toFixed(2)} s to ${o.record}`);
  }
  return info.reason === 'normal' || info.reason === 'remote' ? 0 : 1;
}
