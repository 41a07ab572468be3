/**
 * The media frame of terminal protocol v1: a 10-byte header, then the payload.
 *
 *   byte 0    version (high 4 bits, = 1) | frame type (low 4 bits, 0 = media, 1 = keyframe
 *             request: header only, asks the other side for a picture a decoder can start from)
 *   byte 1    stream id (0 = the connection's own kind; 1 audio, 2 video, 3 content when one
 *             connection carries several kinds, a later protocol revision)
 *   byte 2    codec id (see codecs.ts)
 *   byte 3    flags (bit 0: marker, start of a talk spurt; bit 1: keyframe, on video frames)
 *   bytes 4-5 sequence number, unsigned 16-bit big-endian, +1 per frame, wraps
 *   bytes 6-9 timestamp, unsigned 32-bit big-endian, in the codec's clock, wraps
 *
 * Everything here works on caller-owned Uint8Arrays (Node Buffers included) with plain byte
 * operations: no allocation per frame, and the same code runs in Node and in browsers.
 */
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 10;
export const FRAME_TYPE_MEDIA = 0;
export const FRAME_TYPE_KEYFRAME_REQUEST = 1;
export const FLAG_MARKER = 0x01;
export const FLAG_KEYFRAME = 0x02;

export const STREAM_OWN = 0;
export const STREAM_AUDIO = 1;
export const STREAM_VIDEO = 2;
export const STREAM_CONTENT = 3;

export interface FrameHeader {
  type: number;
  stream: number;
  codec: number;
  flags: number;
  seq: number;
  timestamp: number;
}

/** Writes a header into buf at `offset` (0 by default). */
export function writeFrameHeader(
  buf: Uint8Array,
  stream: number,
  codec: number,
  flags: number,
  seq: number,
  timestamp: number,
  offset = 0,
): void {
  buf[offset] = (FRAME_VERSION << 4) | FRAME_TYPE_MEDIA;
  buf[offset + 1] = stream;
  buf[offset + 2] = codec;
  buf[offset + 3] = flags;
  buf[offset + 4] = (seq >>> 8) & 0xff;
  buf[offset + 5] = seq & 0xff;
  buf[offset + 6] = (timestamp >>> 24) & 0xff;
  buf[offset + 7] = (timestamp >>> 16) & 0xff;
  buf[offset + 8] = (timestamp >>> 8) & 0xff;
  buf[offset + 9] = timestamp & 0xff;
}

/** Result of checking a frame: 0 when valid, otherwise why not. */
export const FRAME_OK = 0;
export const FRAME_SHORT = 1;
export const FRAME_BAD_VERSION = 2;
export const FRAME_BAD_TYPE = 3;
/** checkFrame's answer for a valid keyframe request */
export const FRAME_KEYFRAME_REQUEST = 4;

export function checkFrame(buf: Uint8Array): number {
  return checkFrameAt(buf, 0, buf.length);
}

/** checkFrame for the frame at buf[start, end) (no subarray needed on the media path). */
export function checkFrameAt(buf: Uint8Array, start: number, end: number): number {
  const length = end - start;
  if (length < FRAME_HEADER_BYTES) return FRAME_SHORT;
  const b0 = buf[start]!;
  if (b0 >> 4 !== FRAME_VERSION) return FRAME_BAD_VERSION;
  const type = b0 & 0x0f;
  if (type === FRAME_TYPE_KEYFRAME_REQUEST) return FRAME_KEYFRAME_REQUEST;
  if (type !== FRAME_TYPE_MEDIA) return FRAME_BAD_TYPE;
  if (length === FRAME_HEADER_BYTES) return FRAME_SHORT;
  return FRAME_OK;
}

/** Writes a keyframe request (header only) for `stream` and `codec` into buf. */
export function writeKeyframeRequest(buf: Uint8Array, stream: number, codec: number): void {
  writeFrameHeader(buf, stream, codec, 0, 0, 0);
  buf[0] = (FRAME_VERSION << 4) | FRAME_TYPE_KEYFRAME_REQUEST;
}

export function frameSeq(buf: Uint8Array): number {
  return (buf[4]! << 8) | buf[5]!;
}
export function frameTimestamp(buf: Uint8Array): number {
  return ((buf[6]! << 24) | (buf[7]! << 16) | (buf[8]! << 8) | buf[9]!) >>> 0;
}

/** Allocating parse, for tests and tools (not the media path). */
export function readFrameHeader(buf: Uint8Array): FrameHeader {
  return {
    type: buf[0]! & 0x0f,
    stream: buf[1]!,
    codec: buf[2]!,
    flags: buf[3]!,
    seq: frameSeq(buf),
    timestamp: frameTimestamp(buf),
  };
}
