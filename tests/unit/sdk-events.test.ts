/**
 * The SDK against a fake bridge (a `ws` server scripted here, named as a fake) that writes several
 * control messages in ONE TCP write, as a busy bridge's socket delivers them: `calling` together
 * with `answered` or `hangup`. The `ws` package then emits them in the same tick, before the
 * promise of the `call` request has run its continuation. Found by the soak: calls that the
 * bridge had answered stayed "calling" in the SDK for ever.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';

/** One unmasked WebSocket text frame (server to client). */
function textFrame(obj: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(obj));
  const head = payload.length < 126 ? Buffer.from([0x81, payload.length]) : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}

function rawSocket(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

type Script = (callId: string, id: number) => unknown[];

async function fakeBridge(afterCall: Script): Promise<{ url: string; hangups: string[]; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const hangups: string[] = [];
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; id?: number; kind?: string; callId?: string };
      if (msg.type === 'bind') {
        ws.send(JSON.stringify({ type: 'bound', v: 1, kind: msg.kind, number: '1001' }));
      } else if (msg.type === 'call') {
        // the reply and what follows it, in one write
        rawSocket(ws).write(Buffer.concat(afterCall('CALL00000001', msg.id!).map(textFrame)));
      } else if (msg.type === 'hangup') {
        hangups.push(msg.callId!);
      }
    });
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/`,
    hangups,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

const calling = (callId: string, id: number) => ({ type: 'calling', id, callId, to: '700', codec: 'PCMU/8000', media: { audio: { token: 'tok', expiresInMs: 30000 } } });

test('sdk: an `answered` read in the same chunk as `calling` is not lost', async (t) => {
  const bridge = await fakeBridge((callId, id) => [calling(callId, id), { type: 'ringing', callId }, { type: 'answered', callId }]);
  t.after(() => bridge.close());
  const terminal = createNodeTerminal({ url: bridge.url, number: '1001', password: 'x', requestTimeoutMs: 2000 });
  t.after(() => terminal.close());
  await terminal.connect();
  const call = await terminal.call('700');
  assert.equal(call.state, 'answered');
  await call.answered();
});

test('sdk: a `hangup` read in the same chunk as `calling` ends the call (CALL_ENDED, not a hang)', async (t) => {
  const bridge = await fakeBridge((callId, id) => [calling(callId, id), { type: 'hangup', callId, reason: 'busy', cause: 17 }]);
  t.after(() => bridge.close());
  const terminal = createNodeTerminal({ url: bridge.url, number: '1001', password: 'x', requestTimeoutMs: 2000 });
  t.after(() => terminal.close());
  await terminal.connect();
  await assert.rejects(terminal.call('700'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CALL_ENDED');
    assert.match(err.message, /busy/);
    return true;
  });
});

test('sdk: a media bind the bridge never answers times out instead of waiting for ever', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.after(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; id?: number; kind?: string };
      // the control bind and the call are answered; the audio bind is not
      if (msg.type === 'bind' && msg.kind === 'control') ws.send(JSON.stringify({ type: 'bound', v: 1, kind: 'control', number: '1001' }));
      if (msg.type === 'call') ws.send(JSON.stringify(calling('CALL00000002', msg.id!)));
    });
  });
  const terminal = createNodeTerminal({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, number: '1001', password: 'x', requestTimeoutMs: 500 });
  t.after(() => terminal.close());
  await terminal.connect();
  const started = Date.now();
  await assert.rejects(terminal.call('700'), (err: Error & { code?: string }) => err.code === 'TIMEOUT');
  assert.ok(Date.now() - started < 3000);
});
