// MediaFrameReader (the media connections' fast WebSocket frame reader) and the one-write framing
// of wsFrames.ts, against ws itself: the fast path takes small final binary frames, everything else
// reaches ws's reader whole and in order, byte-by-byte delivery included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { createServer as createHttp } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';
import { MediaFrameReader } from '../../bridge/server/MediaFrameReader.ts';
import { rawSocket, writeWsBinaryHeader, wsHeaderBytes } from '../../bridge/server/wsFrames.ts';

/** a client frame (masked, random key) */
function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const n = payload.length;
  const len = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.alloc(len + 4 + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(0, 2);
    out.writeUInt32BE(n, 6);
  }
  const mask = randomBytes(4);
  mask.copy(out, len);
  for (let i = 0; i < n; i++) out[len + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

interface Seen {
  kind: 'fast' | 'message' | 'ping';
  data: string;
}

async function server(maxBytes: number): Promise<{ port: number; seen: Seen[]; wss: WebSocketServer; close(): Promise<void>; conn: Promise<WebSocket> }> {
  const seen: Seen[] = [];
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const h = createHttp();
  let resolveConn!: (ws: WebSocket) => void;
  const conn = new Promise<WebSocket>((r) => (resolveConn = r));
  h.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (d: Buffer, bin: boolean) => seen.push({ kind: 'message', data: bin ? d.toString('hex') : `text:${d.toString()}` }));
      ws.on('error', () => undefined);
      ws.on('ping', (d: Buffer) => seen.push({ kind: 'ping', data: d.toString('hex') }));
      const reader = new MediaFrameReader(rawSocket(ws)!, ws, (buf, s, e) => seen.push({ kind: 'fast', data: buf.subarray(s, e).toString('hex') }), maxBytes);
      assert.equal(reader.active, true);
      resolveConn(ws);
    }),
  );
  await new Promise<void>((r) => h.listen(0, '127.0.0.1', r));
  return {
    port: (h.address() as AddressInfo).port,
    seen,
    wss,
    conn,
    close: () => new Promise<void>((r) => {
      h.closeAllConnections();
      h.close(() => r());
    }),
  };
}

async function handshake(port: number): Promise<{ socket: Socket; rest: Buffer }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let got = Buffer.alloc(0);
  while (!got.includes('\r\n\r\n')) got = Buffer.concat([got, (await once(socket, 'data'))[0] as Buffer]);
  assert.match(got.toString(), /^HTTP\/1.1 101/);
  return { socket, rest: got.subarray(got.indexOf('\r\n\r\n') + 4) };
}

const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('MediaFrameReader: small binary frames on the fast path, the rest through ws, in order, whatever the chunking', async () => {
  for (const chunking of ['whole', 'bytes'] as const) {
    const srv = await server(64);
    try {
      const { socket } = await handshake(srv.port);
      const a = Buffer.from('10000001000100000000aabbcc', 'hex');
      const b = Buffer.alloc(120, 7); // 7-bit length, fast
      const c = Buffer.alloc(200, 9); // 16-bit length, over maxBytes: through ws
      const bytes = Buffer.concat([
        clientFrame(2, a),
        clientFrame(1, Buffer.from('hello')), // text
        clientFrame(9, Buffer.from('pp')), // ping
        clientFrame(2, b.subarray(0, 50)),
        clientFrame(2, c),
        clientFrame(2, Buffer.from('0102', 'hex'), false), // fragmented binary: through ws
        clientFrame(0, Buffer.from('03', 'hex'), true),
        clientFrame(2, Buffer.from('ff', 'hex')),
      ]);
      if (chunking === 'whole') socket.write(bytes);
      else
        for (let i = 0; i < bytes.length; i++) {
          socket.write(bytes.subarray(i, i + 1));
          if (i % 7 === 0) await new Promise((r) => setImmediate(r));
        }
      await until(() => srv.seen.length >= 7);
      assert.deepEqual(srv.seen, [
        { kind: 'fast', data: a.toString('hex') },
        { kind: 'message', data: 'text:hello' },
        { kind: 'ping', data: Buffer.from('pp').toString('hex') },
        { kind: 'fast', data: b.subarray(0, 50).toString('hex') },
        { kind: 'message', data: c.toString('hex') },
        { kind: 'message', data: '010203' },
        { kind: 'fast', data: 'ff' },
      ], chunking);
      // close handshake through ws
      const ws = await srv.conn;
      const closed = once(ws, 'close');
      socket.write(clientFrame(8, Buffer.from([0x03, 0xe8])));
      const [code] = await closed;
      assert.equal(code, 1000);
      socket.destroy();
    } finally {
      await srv.close();
    }
  }
});

test('MediaFrameReader: an unmasked client frame still reaches ws, which refuses it', async () => {
  const srv = await server(64);
  try {
    const { socket } = await handshake(srv.port);
    const ws = await srv.conn;
    const closed = new Promise<number>((r) => ws.on('close', (c: number) => r(c)));
    const [reply] = (await Promise.all([once(socket, 'data'), socket.write(Buffer.from([0x82, 0x02, 0x01, 0x02]))]))[0] as [Buffer];
    // ws answers with a close frame, code 1002 (protocol error)
    assert.equal(reply[0], 0x88);
    assert.equal(reply.readUInt16BE(2), 1002);
    socket.destroy();
    await closed;
    assert.equal(srv.seen.length, 0);
    socket.destroy();
  } finally {
    await srv.close();
  }
});

test('wsFrames: one-buffer server frames that ws clients read', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(wss, 'listening');
  try {
    const conn = once(wss, 'connection');
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`);
    const [ws] = (await conn) as [WebSocket];
    await once(client, 'open');
    const got: number[] = [];
    client.on('message', (d: Buffer) => got.push(d.length));
    for (const n of [1, 125, 126, 1000, 65535, 65536, 70000]) {
      assert.equal(wsHeaderBytes(n), n < 126 ? 2 : n < 65536 ? 4 : 10);
      const buf = Buffer.alloc(wsHeaderBytes(n) + n, 5);
      assert.equal(writeWsBinaryHeader(buf, n), wsHeaderBytes(n));
      rawSocket(ws)!.write(buf);
    }
    await until(() => got.length === 7);
    assert.deepEqual(got, [1, 125, 126, 1000, 65535, 65536, 70000]);
    client.close();
  } finally {
    wss.close();
  }
});
