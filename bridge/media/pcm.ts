/**
 * Linear PCM helpers for tools (the terminal CLI, tests): resampling whole signals, and
 * encoding/decoding 20 ms payloads of a codec. Not used on the bridge's media path.
 */
import type { AudioCodec } from '../protocol/codecs.ts';
import { ulawDecode, ulawEncode } from './g711.ts';

/** Linear-interpolation resampling of a whole signal. */
export function resample(samples: Int16Array, from: number, to: number): Int16Array {
  if (from === to) return samples;
  const n = Math.floor((samples.length * to) / from);
  const out = new Int16Array(n);
  const step = from / to;
  for (let i = 0; i < n; i++) {
    const pos = i * step;
    const j = Math.floor(pos);
    const frac = pos - j;
    const a = samples[j] ?? 0;
    const b = samples[j + 1] ?? a;
    out[i] = Math.round(a + (b - a) * frac);
  }
  return out;
}

/** Encodes samples (at the codec's rate) into one payload. */
export function encodePayload(codec: AudioCodec, samples: Int16Array, out: Uint8Array): Uint8Array {
  if (codec.name === 'PCMU/8000') {
    for (let i = 0; i < samples.length; i++) out[i] = ulawEncode(samples[i]!);
    return out.subarray(0, samples.length);
  }
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    out[i * 2] = s & 0xff;
    out[i * 2 + 1] = (s >> 8) & 0xff;
  }
  return out.subarray(0, samples.length * 2);
}

/** Decodes one payload into samples at the codec's rate. */
export function decodePayload(codec: AudioCodec, payload: Uint8Array): Int16Array {
  if (codec.name === 'PCMU/8000') {
    const out = new Int16Array(payload.length);
    for (let i = 0; i < payload.length; i++) out[i] = ulawDecode(payload[i]!);
    return out;
  }
  const n = payload.length >> 1;
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = (payload[i * 2]! | (payload[i * 2 + 1]! << 8)) << 16 >> 16;
  return out;
}
