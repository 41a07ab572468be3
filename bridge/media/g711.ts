/**
 * G.711 u-law (ITU-T G.711, the Sun reference algorithm) with lookup tables built once.
 */
const BIAS = 0x84;
const CLIP = 32635;

const decodeTable = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  let sample = (((mantissa << 3) + BIAS) << exponent) - BIAS;
  if (u & 0x80) sample = -sample;
  decodeTable[i] = sample;
}

function encodeSample(sample: number): number {
  let sign = 0;
  if (sample < 0) {
    sample = -sample;
    sign = 0x80;
  }
  if (sample > CLIP) sample = CLIP;
  sample += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (sample & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (sample >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** 64 Ki-entry table: index = sample + 32768. */
const encodeTable = new Uint8Array(65536);
for (let s = -32768; s < 32768; s++) encodeTable[s + 32768] = encodeSample(s);

export function ulawDecode(byte: number): number {
  return decodeTable[byte & 0xff]!;
}

export function ulawEncode(sample: number): number {
  return encodeTable[(sample | 0) + 32768]!;
}
