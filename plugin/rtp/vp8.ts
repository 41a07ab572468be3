/**
 * VP8 over RTP (RFC 7741): frames to payloads with a one-byte payload descriptor, and back.
 * Incoming descriptors may carry the extended fields (PictureID, TL0PICIDX, TID/KEYIDX).
 */
import type { VideoFrameSink } from './h264.ts';

/** Size of the payload descriptor at the start of `payload`, or -1 if malformed. */
export function vp8DescriptorSize(payload: Uint8Array): number {
  if (payload.length < 1) return -1;
  let size = 1;
  const b0 = payload[0]!;
  if (b0 & 0x80) {
    if (payload.length < 2) return -1;
    const x = payload[1]!;
    size = 2;
    if (x & 0x80) {
      if (payload.length < size + 1) return -1;
      size += payload[size]! & 0x80 ? 2 : 1; // PictureID, 7 or 15 bits
    }
    if (x & 0x40) size += 1; // TL0PICIDX
    if (x & 0x30) size += 1; // TID / KEYIDX
  }
  return size < payload.length ? size : -1;
}

/** True when a VP8 frame is a key frame (its first bit, P, is 0). */
export function isVp8Keyframe(frame: Uint8Array): boolean {
  return frame.length > 0 && (frame[0]! & 0x01) === 0;
}

export class Vp8Packetizer {
  private scratch: Buffer;
  private readonly maxPayload: number;

  constructor(maxPayload = 1200) {
    this.maxPayload = maxPayload;
    this.scratch = Buffer.alloc(maxPayload);
  }

  packetize(frame: Uint8Array, emit: (payload: Uint8Array, marker: boolean) => void): void {
    const chunk = this.maxPayload - 1;
    for (let pos = 0; pos < frame.length; pos += chunk) {
      const len = Math.min(chunk, frame.length - pos);
      this.scratch[0] = pos === 0 ? 0x10 : 0x00; // S bit on the first packet, partition 0
      this.scratch.set(frame.subarray(pos, pos + len), 1);
      emit(this.scratch.subarray(0, 1 + len), pos + len >= frame.length);
    }
  }
}

export class Vp8Depacketizer {
  private buf = Buffer.alloc(256 * 1024);
  private len = 0;
  private timestamp = -1;
  private lastSeq = -1;
  private broken = false;
  private started = false;
  private readonly sink: VideoFrameSink;
  droppedFrames = 0;
  malformed = 0;

  constructor(sink: VideoFrameSink) {
    this.sink = sink;
  }

  private flush(): void {
    if (this.len > 0 && this.started && !this.broken) {
      const frame = Buffer.from(this.buf.subarray(0, this.len));
      this.sink(frame, this.timestamp, isVp8Keyframe(frame));
    } else if (this.len > 0) this.droppedFrames++;
    this.len = 0;
    this.broken = false;
    this.started = false;
  }

  push(payload: Uint8Array, seq: number, timestamp: number, marker: boolean): void {
    if (this.timestamp !== -1 && timestamp !== this.timestamp) this.flush();
    if (this.lastSeq !== -1 && ((this.lastSeq + 1) & 0xffff) !== seq) this.broken = true;
    this.lastSeq = seq;
    this.timestamp = timestamp;
    const d = vp8DescriptorSize(payload);
    if (d < 0) {
      this.malformed++;
      this.broken = true;
      return;
    }
    const startOfFrame = (payload[0]! & 0x10) !== 0 && (payload[0]! & 0x07) === 0;
    if (startOfFrame) {
      if (this.len > 0) this.flush();
      this.started = true;
      this.broken = false;
    }
    const body = payload.subarray(d);
    if (this.len + body.length > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.len + body.length));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    this.buf.set(body, this.len);
    this.len += body.length;
    if (marker) {
      this.flush();
      this.timestamp = -1;
    }
  }
}
