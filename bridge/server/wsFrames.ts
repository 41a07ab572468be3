/**
 * WebSocket framing for the media path (RFC 6455 section 5.2), so that a media frame goes out as ONE
 * buffer in ONE socket write: the WebSocket header, the confmux header and the payload built in
 * place, instead of ws's Sender (cork, two writes, uncork, a writev per message).
 *
 * Writing to the socket under ws is safe because ws sends synchronously whenever it has nothing
 * queued, and it queues only for permessage-deflate (off on every connection of the bridge) or Blob
 * data (never sent here): frames written here and ws's own (text, ping, close) keep their order.
 */
import type { Socket } from 'node:net';
import type WebSocket from 'ws';

/** bytes of an unmasked (server to client) WebSocket header for a payload of n bytes */
export function wsHeaderBytes(n: number): number {
  return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

/** Writes an unmasked, final binary frame's header for a payload of n bytes at buf[0]; returns its length. */
export function writeWsBinaryHeader(buf: Uint8Array, n: number): number {
  buf[0] = 0x82; // FIN, opcode 2 (binary)
  if (n < 126) {
    buf[1] = n;
    return 2;
  }
  if (n < 65536) {
    buf[1] = 126;
    buf[2] = n >>> 8;
    buf[3] = n & 0xff;
    return 4;
  }
  buf[1] = 127;
  buf[2] = buf[3] = buf[4] = buf[5] = 0;
  buf[6] = (n >>> 24) & 0xff;
  buf[7] = (n >>> 16) & 0xff;
  buf[8] = (n >>> 8) & 0xff;
  buf[9] = n & 0xff;
  return 10;
}

/**
 * The TCP socket under a ws WebSocket (ws keeps it in `_socket`; not in its typings), or null when
 * it is not a plain stream socket we can write to.
 */
export function rawSocket(ws: WebSocket): Socket | null {
  const s = (ws as unknown as { _socket?: Socket | null })._socket;
  return s && typeof s.write === 'function' && typeof s.listeners === 'function' ? s : null;
}
