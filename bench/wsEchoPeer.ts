/**
 * BENCHMARK STAND-IN for Asterisk's chan_websocket media sockets (`npm run bench -- --ws-echo`), not
 * a media server. It accepts WebSocket connections with the subprotocol "media" on 127.0.0.1, greets
 * each with MEDIA_START as Asterisk does, and then sends back every binary frame it receives, unmasked,
 * as Asterisk sends a channel's audio. The bridge's echo stand-in (plugin/echo/WebSocketEchoCall.ts)
 * opens one such connection per call with the same class that carries Asterisk's audio
 * (WebSocketMediaLeg), so the bridge relays each frame over a WebSocket leg, on its native pump when
 * built, as it does for Asterisk's default transport.
 *
 * Run as its own process by bench/run.ts, so that its CPU is the "echo peer" figure. After the
 * greeting each socket goes to a C++ thread (native/loadgen.cc, the echo framing), woken by each
 * frame like a media server's socket; without the native module (or with
 * CONFMUX_BENCH_WS_ECHO=javascript) the echo runs in JavaScript, far slower: the bench then says so.
 *
 * Prints one JSON line {"port":N,"native":bool} when listening; exits when its stdin closes.
 */
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { rawSocket } from '../bridge/server/wsFrames.ts';
import { loadNativeLoadGen, NativeLoadGen } from './NativeLoadGen.ts';

// CONFMUX_BENCH_WS_ECHO=javascript: the echo in JavaScript even when the native module is built (tested)
const native = process.env.CONFMUX_BENCH_WS_ECHO === 'javascript' ? 'asked for the JavaScript echo' : loadNativeLoadGen();
// woken by each frame (poll 0), as a media server's socket is
const echo = typeof native === 'string' ? null : new NativeLoadGen(native, 160, 'echo', 0);
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 65536,
  handleProtocols: (protocols) => (protocols.has('media') ? 'media' : false),
});
let lanes = 0;

function greet(ws: WebSocket, id: string): void {
  // what chan_websocket sends first (FACTS.md): the bridge's leg opens on it
  ws.send(`MEDIA_START connection_id:${id} channel:WebSocket/bench-${id} channel_id:bench-${id} format:ulaw optimal_frame_size:160 ptime:20`, (err) => {
    if (err) return;
    const socket = rawSocket(ws);
    if (echo !== null && socket !== null && echo.add(socket, lanes++)) return;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) ws.send(data, { binary: true });
    });
  });
}

const server = createServer((_req, res) => {
  res.writeHead(426).end();
});
server.on('upgrade', (req, socket, head) => {
  const m = /^\/media\/([A-Za-z0-9_-]{1,64})$/.exec(req.url ?? '');
  if (m === null) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => greet(ws, m[1]!));
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port, native: echo !== null })}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => {
  echo?.close();
  process.exit(0);
});
process.on('SIGTERM', () => {
  echo?.close();
  process.exit(0);
});
