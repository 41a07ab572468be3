// Minimal RIFF/WAVE reader and writer for 16-bit PCM.
//
// readWav accepts PCM16 (format 1, or WAVE_FORMAT_EXTENSIBLE carrying PCM),
// mono or multi-channel (the first channel is returned), and skips chunks it
// does not know (LIST, fact, ...). writeWav writes PCM16 mono.
import { readFileSync, writeFileSync } from 'node:fs';

export interface Wav {
  sampleRate: number;
  samples: Int16Array;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

export function readWav(input: string | Buffer): Wav {
  const buf = typeof input === 'string' ? readFileSync(input) : input;
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('readWav: not a RIFF/WAVE file');
  }
  let off = 12;
  let fmt: { format: number; channels: number; sampleRate: number; bits: number; blockAlign: number } | undefined;
  let data: Buffer | undefined;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    let size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    // A writer killed mid-recording may leave 0 or 0xffffffff as the data size.
    if (id === 'data' && (size === 0 || size === 0xffffffff || body + size > buf.length)) size = buf.length - body;
    if (id === 'fmt ') {
      if (size < 16) throw new Error('readWav: short fmt chunk');
      let format = buf.readUInt16LE(body);
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 26) format = buf.readUInt16LE(body + 24);
      fmt = {
        format,
        channels: buf.readUInt16LE(body + 2),
        sampleRate: buf.readUInt32LE(body + 4),
        blockAlign: buf.readUInt16LE(body + 12),
        bits: buf.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      data = buf.subarray(body, Math.min(buf.length, body + size));
    }
    off = body + size + (size & 1); // chunks are padded to even sizes
  }
  if (!fmt) throw new Error('readWav: no fmt chunk');
  if (!data) throw new Error('readWav: no data chunk');
  if (fmt.format !== WAVE_FORMAT_PCM || fmt.bits !== 16) {
    throw new Error(`readWav: only 16-bit PCM is supported (format ${fmt.format}, ${fmt.bits} bits)`);
  }
  if (fmt.channels < 1) throw new Error('readWav: zero channels');
  const frameBytes = fmt.blockAlign || fmt.channels * 2;
  const n = Math.floor(data.length / frameBytes);
  const samples = new Int16Array(n);
  for (let i = 0; i < n; i++) samples[i] = data.readInt16LE(i * frameBytes);
  return { sampleRate: fmt.sampleRate, samples };
}

export function encodeWav(sampleRate: number, samples: Int16Array): Buffer {
  const dataBytes = samples.length * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(samples[i]!, 44 + i * 2);
  return buf;
}

export function writeWav(path: string, sampleRate: number, samples: Int16Array): void {
  writeFileSync(path, encodeWav(sampleRate, samples));
}
