/**
 * H.264 over RTP (RFC 6184, packetization-mode 1): access units in Annex B byte-stream form
 * (00 00 00 01 start codes) to RTP payloads and back. Sending uses single NAL unit packets and
 * FU-A fragments; receiving also takes STAP-A aggregates. A NAL unit with a lost fragment is
 * dropped, never delivered broken.
 */
export const NAL_SLICE = 1;
export const NAL_IDR = 5;
export const NAL_SEI = 6;
export const NAL_SPS = 7;
export const NAL_PPS = 8;
export const NAL_AUD = 9;
const STAP_A = 24;
const FU_A = 28;
const START_CODE = Buffer.from([0, 0, 0, 1]);

/** Calls fn(start, end) for every NAL unit of an Annex B buffer (start codes of 3 or 4 bytes). */
export function forEachNal(au: Uint8Array, fn: (start: number, end: number) => void): void {
  const n = au.length;
  let i = 0;
  let nalStart = -1;
  while (i + 2 < n) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1) {
      if (nalStart >= 0) {
        let end = i;
        if (end > nalStart && au[end - 1] === 0) end--; // the 4-byte form's leading zero
        if (end > nalStart) fn(nalStart, end);
      }
      i += 3;
      nalStart = i;
      continue;
    }
    i++;
  }
  if (nalStart >= 0 && nalStart < n) fn(nalStart, n);
}

/**
 * Splits an access unit into RTP payloads no larger than maxPayload. `emit` gets a view that is
 * valid only during the call (FU-A payloads are built in a reused scratch buffer).
 */
export class H264Packetizer {
  private scratch: Buffer;
  private readonly maxPayload: number;

  constructor(maxPayload = 1200) {
    this.maxPayload = maxPayload;
    this.scratch = Buffer.alloc(maxPayload);
  }

  packetize(au: Uint8Array, emit: (payload: Uint8Array, marker: boolean) => void): void {
    const nals: [number, number][] = [];
    forEachNal(au, (s, e) => nals.push([s, e]));
    for (let k = 0; k < nals.length; k++) {
      const [s, e] = nals[k]!;
      const last = k === nals.length - 1;
      const type = au[s]! & 0x1f;
      if (type === NAL_AUD) {
        if (last) emit(au.subarray(s, e), true); // keep the marker on something
        continue;
      }
      if (e - s <= this.maxPayload) {
        emit(au.subarray(s, e), last);
        continue;
      }
      const header = au[s]!;
      const indicator = (header & 0xe0) | FU_A;
      let pos = s + 1;
      const chunk = this.maxPayload - 2;
      let first = true;
      while (pos < e) {
        const len = Math.min(chunk, e - pos);
        const end = pos + len >= e;
        this.scratch[0] = indicator;
        this.scratch[1] = (first ? 0x80 : 0) | (end ? 0x40 : 0) | (header & 0x1f);
        this.scratch.set(au.subarray(pos, pos + len), 2);
        emit(this.scratch.subarray(0, 2 + len), last && end);
        pos += len;
        first = false;
      }
    }
  }
}

export interface VideoFrameSink {
  (frame: Buffer, timestamp: number, keyframe: boolean): void;
}

/**
 * Reassembles RTP payloads into access units (Annex B). Call push() per packet in arrival order;
 * the sink gets each complete access unit when its marker bit arrives (or its timestamp ends).
 */
export class H264Depacketizer {
  private buf: Buffer = Buffer.alloc(256 * 1024);
  private len = 0;
  private nalStart = -1; // where the FU-A in progress began (its start code), -1 when none
  private timestamp = -1;
  private lastSeq = -1;
  private keyframe = false;
  private readonly sink: VideoFrameSink;
  /** NAL units dropped for a lost fragment; malformed payloads ignored */
  droppedNals = 0;
  malformed = 0;

  constructor(sink: VideoFrameSink) {
    this.sink = sink;
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.len + extra));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }

  private appendNal(src: Uint8Array): void {
    this.ensure(4 + src.length);
    START_CODE.copy(this.buf, this.len);
    this.buf.set(src, this.len + 4);
    this.len += 4 + src.length;
    const type = src[0]! & 0x1f;
    if (type === NAL_IDR || type === NAL_SPS) this.keyframe = true;
  }

  private flush(): void {
    if (this.nalStart >= 0) {
      // an FU-A never finished: drop that NAL unit
      this.len = this.nalStart;
      this.nalStart = -1;
      this.droppedNals++;
    }
    if (this.len > 0) this.sink(Buffer.from(this.buf.subarray(0, this.len)), this.timestamp, this.keyframe);
    this.len = 0;
    this.keyframe = false;
  }

  push(payload: Uint8Array, seq: number, timestamp: number, marker: boolean): void {
    if (this.timestamp !== -1 && timestamp !== this.timestamp) this.flush();
    const gap = this.lastSeq !== -1 && ((this.lastSeq + 1) & 0xffff) !== seq;
    this.lastSeq = seq;
    this.timestamp = timestamp;
    if (gap && this.nalStart >= 0) {
      this.len = this.nalStart;
      this.nalStart = -1;
      this.droppedNals++;
    }
    if (payload.length < 1) {
      this.malformed++;
      return;
    }
    const type = payload[0]! & 0x1f;
    if (type >= 1 && type <= 23) {
      this.appendNal(payload);
    } else if (type === STAP_A) {
      let pos = 1;
      while (pos + 2 <= payload.length) {
        const size = (payload[pos]! << 8) | payload[pos + 1]!;
        pos += 2;
        if (size === 0 || pos + size > payload.length) {
          this.malformed++;
          break;
        }
        this.appendNal(payload.subarray(pos, pos + size));
        pos += size;
      }
    } else if (type === FU_A) {
      if (payload.length < 3) {
        this.malformed++;
        return;
      }
      const fu = payload[1]!;
      const start = (fu & 0x80) !== 0;
      const end = (fu & 0x40) !== 0;
      if (start) {
        if (this.nalStart >= 0) {
          this.len = this.nalStart;
          this.droppedNals++;
        }
        this.nalStart = this.len;
        this.ensure(5 + payload.length);
        START_CODE.copy(this.buf, this.len);
        this.buf[this.len + 4] = (payload[0]! & 0xe0) | (fu & 0x1f);
        this.len += 5;
        const nalType = fu & 0x1f;
        if (nalType === NAL_IDR || nalType === NAL_SPS) this.keyframe = true;
      }
      if (this.nalStart >= 0) {
        this.ensure(payload.length);
        this.buf.set(payload.subarray(2), this.len);
        this.len += payload.length - 2;
        if (end) this.nalStart = -1;
      } else if (!gap) {
        // a middle or end fragment whose start was lost earlier (already counted when it was)
        this.droppedNals += end ? 1 : 0;
      }
    } else {
      this.malformed++;
    }
    if (marker) {
      this.flush();
      this.timestamp = -1;
    }
  }
}

/** True when an access unit holds an IDR slice or an SPS (a decoder can start there). */
export function isH264Keyframe(au: Uint8Array): boolean {
  let key = false;
  forEachNal(au, (s) => {
    const t = au[s]! & 0x1f;
    if (t === NAL_IDR || t === NAL_SPS) key = true;
  });
  return key;
}
