/**
 * A fast path for the incoming WebSocket frames of a media connection. It takes the socket's
 * 'data' events from ws's reader and handles the frames the media path is made of: final, binary,
 * masked (from a terminal; unmasked from the bridge, for the load generator), up to `maxBytes`.
 * Each is unmasked in place and handed to the sink as (buffer, start, end): no 'message' event,
 * no Buffer object, no copy. Every other frame (text, ping, pong, close, fragments, larger
 * frames, anything malformed) goes, whole and in order, to ws's own reader, which handles or
 * refuses it exactly as it would have. Once the WebSocket leaves the OPEN state everything goes
 * to ws.
 *
 * ws keeps one 'data' listener on its socket (websocket.js socketOnData); if the socket does not
 * look like that (another ws version), or ws's reader holds part of a frame, the reader does not
 * take over and ws's 'message' events carry the media as before (`active` is false).
 */
import type { Socket } from 'node:net';
import type WebSocket from 'ws';

/** a media frame at buf[start, end) (the WebSocket payload, unmasked) */
export type FrameSink = (buf: Buffer, start: number, end: number) => void;

export class MediaFrameReader {
  /** true when the reader took the socket's data events over */
  readonly active: boolean;
  private readonly socket: Socket;
  private readonly ws: WebSocket;
  private readonly sink: FrameSink;
  private readonly maxBytes: number;
  private readonly masked: number;
  private readonly wsOnData: ((chunk: Buffer) => void) | null;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  /** the start of a frame that has not fully arrived yet */
  private partial: Buffer | null = null;
  /** bytes of the current frame still owed to ws's reader */
  private owed = 0;
  /** ws's reader is inside a fragmented message: every frame goes there until it ends */
  private fragmented = false;
  private closed = false;

  /**
   * @param masked true on the bridge (frames from a client are masked), false on a client
   * @param maxBytes largest payload taken on the fast path; larger ones go to ws
   */
  constructor(socket: Socket, ws: WebSocket, sink: FrameSink, maxBytes: number, masked = true) {
    this.socket = socket;
    this.ws = ws;
    this.sink = sink;
    this.maxBytes = maxBytes;
    this.masked = masked ? 0x80 : 0;
    const listeners = socket.listeners('data');
    // ws's reader must be at a frame boundary (a client that sent more right behind its bind, before
    // 'bound', leaves bytes there): otherwise ws keeps reading this connection
    const receiver = (ws as unknown as { _receiver?: { _bufferedBytes?: number } })._receiver;
    const idle = (receiver?._bufferedBytes ?? 0) === 0;
    this.wsOnData = listeners.length === 1 && idle ? (listeners[0] as (chunk: Buffer) => void) : null;
    this.active = this.wsOnData !== null;
    if (this.wsOnData) {
      socket.removeListener('data', this.wsOnData);
      socket.on('data', this.onData);
    }
  }

  /** Hands the socket back to ws's reader (whatever is buffered first). Idempotent. */
  close(): void {
    if (this.closed || !this.wsOnData) return;
    this.closed = true;
    this.socket.removeListener('data', this.onData);
    this.socket.on('data', this.wsOnData);
    const rest = this.partial;
    this.partial = null;
    if (rest) this.wsOnData.call(this.socket, rest);
  }

  private toWs(buf: Buffer): void {
    this.wsOnData!.call(this.socket, buf);
  }

  private read(input: Buffer): void {
    let buf = input;
    if (this.partial !== null) {
      buf = Buffer.concat([this.partial, input]);
      this.partial = null;
    }
    const len = buf.length;
    let o = 0;
    while (o < len) {
      if (this.owed > 0) {
        const n = Math.min(this.owed, len - o);
        this.owed -= n;
        this.toWs(o === 0 && n === len ? buf : buf.subarray(o, o + n));
        o += n;
        continue;
      }
      if (this.ws.readyState !== 1 || this.closed) {
        // closing: ws reads the rest (the peer's close frame)
        this.toWs(o === 0 ? buf : buf.subarray(o));
        return;
      }
      const avail = len - o;
      if (avail < 2) break;
      const b0 = buf[o]!;
      const b1 = buf[o + 1]!;
      let n = b1 & 0x7f;
      let header = 2;
      if (n === 126) header = 4;
      else if (n === 127) header = 10;
      if ((b1 & 0x80) !== 0) header += 4;
      if (avail < header) break;
      if (n === 126) n = (buf[o + 2]! << 8) | buf[o + 3]!;
      else if (n === 127) n = buf.readUInt32BE(o + 2) * 0x100000000 + buf.readUInt32BE(o + 6);
      if (b0 === 0x82 && (b1 & 0x80) === this.masked && !this.fragmented && n <= this.maxBytes) {
        if (avail < header + n) break;
        const start = o + header;
        const end = start + n;
        if (this.masked !== 0) {
          const m = start - 4;
          const m0 = buf[m]!;
          const m1 = buf[m + 1]!;
          const m2 = buf[m + 2]!;
          const m3 = buf[m + 3]!;
          if ((m0 | m1 | m2 | m3) !== 0) {
            let i = start;
            const end4 = start + (n & ~3);
            for (; i < end4; i += 4) {
              buf[i] = buf[i]! ^ m0;
              buf[i + 1] = buf[i + 1]! ^ m1;
              buf[i + 2] = buf[i + 2]! ^ m2;
              buf[i + 3] = buf[i + 3]! ^ m3;
            }
            if (i < end) buf[i] = buf[i]! ^ m0;
            if (i + 1 < end) buf[i + 1] = buf[i + 1]! ^ m1;
            if (i + 2 < end) buf[i + 2] = buf[i + 2]! ^ m2;
          }
        }
        o = end;
        this.sink(buf, start, end);
        continue;
      }
      // not for the fast path: the whole frame goes to ws, which keeps track of fragments too
      const opcode = b0 & 0x0f;
      if (opcode < 8) this.fragmented = (b0 & 0x80) === 0;
      this.owed = header + n;
    }
    if (o < len) this.partial = Buffer.from(buf.subarray(o));
  }
}
