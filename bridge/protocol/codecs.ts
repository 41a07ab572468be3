/**
 * Codecs a terminal may agree for a call, with the id carried in byte 2 of every media frame.
 * L16 is little-endian here (as Asterisk's slin and browsers' Int16Array), unlike RFC 3551's L16.
 */
export interface AudioCodec {
  readonly id: number;
  readonly name: CodecName;
  readonly sampleRate: number;
  /** bytes per sample of the encoded payload */
  readonly bytesPerSample: number;
  /** bytes in one 20 ms frame */
  readonly frameBytes: number;
}

export type CodecName = 'PCMU/8000' | 'L16/16000' | 'L16/8000';

export const PCMU: AudioCodec = Object.freeze({ id: 0, name: 'PCMU/8000', sampleRate: 8000, bytesPerSample: 1, frameBytes: 160 });
export const L16_16K: AudioCodec = Object.freeze({ id: 1, name: 'L16/16000', sampleRate: 16000, bytesPerSample: 2, frameBytes: 640 });

/**
 * Linear 16-bit little-endian at 8 kHz: the format of FreeSWITCH's `unicast` stream from a
 * loopback channel (320 bytes per 20 ms). A leg format only, NOT offered to terminals (not in
 * AUDIO_CODECS, so the protocol is unchanged); its id is reserved so it never collides with a
 * terminal codec.
 */
export const L16_8K: AudioCodec = Object.freeze({ id: 2, name: 'L16/8000', sampleRate: 8000, bytesPerSample: 2, frameBytes: 320 });

/** Codecs offered to terminals, best first. */
export const AUDIO_CODECS: readonly AudioCodec[] = Object.freeze([L16_16K, PCMU]);

const byName = new Map<string, AudioCodec>(AUDIO_CODECS.map((c) => [c.name, c]));
const byId: (AudioCodec | undefined)[] = [];
for (const c of AUDIO_CODECS) byId[c.id] = c;

export function codecByName(name: string): AudioCodec | undefined {
  return byName.get(name);
}

export function codecById(id: number): AudioCodec | undefined {
  return byId[id];
}

/** The first of the terminal's offered codecs that the bridge supports, or undefined. */
export function chooseCodec(offered: readonly string[]): AudioCodec | undefined {
  for (const name of offered) {
    const c = byName.get(name);
    if (c) return c;
  }
  return undefined;
}
