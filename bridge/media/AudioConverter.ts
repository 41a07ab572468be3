/**
 * Converts 20 ms audio payloads between the codec a terminal agreed and the format the media
 * server leg carries: PCMU/8000 <-> L16/16000 (little-endian), and for FreeSWITCH's unicast leg
 * L16/8000 <-> L16/16000 and L16/8000 <-> PCMU/8000. Output goes into a buffer owned by the
 * converter and reused for every frame; callers must consume it before the next convert().
 */
import type { AudioCodec } from '../protocol/codecs.ts';
import { ulawDecode, ulawEncode } from './g711.ts';

export class AudioConverter {
  readonly from: AudioCodec;
  readonly to: AudioCodec;
  /** made at the first conversion: a pass-through converter (most calls) never needs one */
  private out: Buffer | null = null;
  /** last input sample of the previous frame, for continuous interpolation when upsampling */
  private last = 0;

  constructor(from: AudioCodec, to: AudioCodec) {
    this.from = from;
    this.to = to;
  }

  /**
   * The sample carried into the next frame's first interpolation (upsampling only): the native
   * pump (bridge/server/PumpedAudio.ts) goes on from it while it relays the call and hands it back.
   */
  get carried(): number {
    return this.last;
  }

  set carried(sample: number) {
    this.last = sample;
  }

  get isPassThrough(): boolean {
    return this.from.id === this.to.id;
  }

  /** Returns a view of the converted payload (valid until the next call). */
  convert(input: Buffer): Buffer {
    if (this.from.id === this.to.id) return input;
    if (this.from.name === 'L16/16000' && this.to.name === 'PCMU/8000') return this.l16ToPcmu(input);
    if (this.from.name === 'PCMU/8000' && this.to.name === 'L16/16000') return this.pcmuToL16(input);
    if (this.from.name === 'L16/16000' && this.to.name === 'L16/8000') return this.l16Down(input);
    if (this.from.name === 'L16/8000' && this.to.name === 'L16/16000') return this.l16Up(input);
    if (this.from.name === 'PCMU/8000' && this.to.name === 'L16/8000') return this.pcmuToL16n(input);
    if (this.from.name === 'L16/8000' && this.to.name === 'PCMU/8000') return this.l16nToPcmu(input);
    throw new Error(`no conversion from ${this.from.name} to ${this.to.name}`);
  }

  private ensure(bytes: number): Buffer {
    if (this.out === null) this.out = Buffer.alloc(bytes <= this.to.frameBytes * 4 ? this.to.frameBytes * 4 : bytes * 2);
    else if (this.out.length < bytes) this.out = Buffer.alloc(bytes * 2);
    return this.out;
  }

  /** 16 kHz -> 8 kHz: average each pair of samples (a 2-tap low-pass), then u-law. */
  private l16ToPcmu(input: Buffer): Buffer {
    const pairs = input.length >> 2;
    const out = this.ensure(pairs);
    for (let i = 0; i < pairs; i++) {
      const a = input.readInt16LE(i * 4);
      const b = input.readInt16LE(i * 4 + 2);
      out[i] = ulawEncode((a + b) >> 1);
    }
    return out.subarray(0, pairs);
  }

  /** u-law -> linear, then 8 kHz -> 16 kHz by linear interpolation. */
  private pcmuToL16(input: Buffer): Buffer {
    const n = input.length;
    const out = this.ensure(n * 4);
    let prev = this.last;
    for (let i = 0; i < n; i++) {
      const s = ulawDecode(input[i]!);
      out.writeInt16LE((prev + s) >> 1, i * 4);
      out.writeInt16LE(s, i * 4 + 2);
      prev = s;
    }
    this.last = prev;
    return out.subarray(0, n * 4);
  }

  /** 16 kHz -> 8 kHz linear: average each pair of samples. */
  private l16Down(input: Buffer): Buffer {
    const pairs = input.length >> 2;
    const out = this.ensure(pairs * 2);
    for (let i = 0; i < pairs; i++) out.writeInt16LE((input.readInt16LE(i * 4) + input.readInt16LE(i * 4 + 2)) >> 1, i * 2);
    return out.subarray(0, pairs * 2);
  }

  /** 8 kHz -> 16 kHz linear, interpolating across frame boundaries. */
  private l16Up(input: Buffer): Buffer {
    const n = input.length >> 1;
    const out = this.ensure(n * 4);
    let prev = this.last;
    for (let i = 0; i < n; i++) {
      const s = input.readInt16LE(i * 2);
      out.writeInt16LE((prev + s) >> 1, i * 4);
      out.writeInt16LE(s, i * 4 + 2);
      prev = s;
    }
    this.last = prev;
    return out.subarray(0, n * 4);
  }

  /** u-law -> linear, same rate. */
  private pcmuToL16n(input: Buffer): Buffer {
    const n = input.length;
    const out = this.ensure(n * 2);
    for (let i = 0; i < n; i++) out.writeInt16LE(ulawDecode(input[i]!), i * 2);
    return out.subarray(0, n * 2);
  }

  /** linear -> u-law, same rate. */
  private l16nToPcmu(input: Buffer): Buffer {
    const n = input.length >> 1;
    const out = this.ensure(n);
    for (let i = 0; i < n; i++) out[i] = ulawEncode(input.readInt16LE(i * 2));
    return out.subarray(0, n);
  }
}
