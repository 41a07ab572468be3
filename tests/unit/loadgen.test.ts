/**
 * The bench's native load generator (native/loadgen.cc through bench/NativeLoadGen.ts), on a
 * loopback TCP connection standing for a bound audio connection: the frames it sends are the
 * JavaScript generator's, byte for byte (golden bytes and writeFrameHeader), paced at 50 a second;
 * it times the frames that come back, answers pings with masked pongs, and counts a close; while
 * pacing it looks at its sockets every --load-poll-us and still times from the kernel's receive time.
 *
 * `npm test` builds the module (scripts/node.sh); this test fails if it is not there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { NativeLoadGen, loadNativeLoadGen } from '../../bench/NativeLoadGen.ts';
import { writeFrameHeader } from '../../bridge/protocol/frame.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** a loopback connection: the client side for the generator, the server side for the test */
async function pair(): Promise<{ client: Socket; server: Socket; received: () => Buffer; close: () => void }> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection');
  const client = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = (await accepted) as [Socket];
  const chunks: Buffer[] = [];
  server.on('data', (d: Buffer) => chunks.push(d));
  return {
    client,
    server,
    received: () => Buffer.concat(chunks),
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

async function until(ready: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('native load generator: paced frames are the JavaScript generator\'s bytes; round trips timed, pings answered, a close counted', async () => {
  const native = loadNativeLoadGen();
  assert.ok(typeof native !== 'string', `the native load generator must be built for the tests: ${String(native)}`);
  const gen = new NativeLoadGen(native, 160);
  const p = await pair();
  try {
    assert.equal(gen.add(p.client, 7), true);
    const before = monotonicMs();
    // 3 frames on the one lane (60 ms at 20 ms), all inside the window
    await gen.pace(60, 0, 10_000);
    const after = monotonicMs();
    await until(() => p.received().length >= 3 * 178, 2000, 'three frames');
    const bytes = p.received();
    assert.equal(bytes.length, 3 * 178, 'three whole frames, nothing more');
    for (let n = 0; n < 3; n++) {
      const f = bytes.subarray(n * 178, (n + 1) * 178);
      // WebSocket: FIN + binary, masked, 16-bit length 170, the zero key
      assert.equal(f.subarray(0, 8).toString('hex'), hex('82 fe 00aa 00000000').toString('hex'));
      // the confmux header as writeFrameHeader writes it: marker on the first, seq n, timestamp n * 160
      const header = Buffer.alloc(10);
      writeFrameHeader(header, 0, 0, n === 0 ? 1 : 0, n, n * 160);
      assert.equal(f.subarray(8, 18).toString('hex'), header.toString('hex'));
      assert.equal(f.subarray(8, 18).toString('hex'), n === 0 ? '10000001000000000000' : n === 1 ? '100000000001000000a0' : '10000000000200000140');
      // the payload: send time (ms, monotonic clock), lane, frame number, then u-law silence
      const sentAt = f.readDoubleLE(18);
      assert.ok(sentAt >= before - 1 && sentAt <= after + 1, `sent at ${sentAt}, between ${before} and ${after}`);
      assert.equal(f.readUInt32LE(26), 7);
      assert.equal(f.readUInt32LE(30), n);
      assert.ok(f.subarray(34).every((b) => b === 0xff));
    }
    // paced at 50 a second on the one lane: frame n never before 20 n ms from the start (`before`
    // is taken just ahead of it), and the three within 40 ms plus the machine's delays
    for (let n = 0; n < 3; n++) {
      const sentAt = bytes.readDoubleLE(n * 178 + 18);
      assert.ok(sentAt >= before + 20 * n - 0.01, `frame ${n} sent ${(sentAt - before).toFixed(2)} ms after the start, not before ${20 * n}`);
    }
    const span = bytes.readDoubleLE(2 * 178 + 18) - bytes.readDoubleLE(18);
    assert.ok(span >= 30 && span <= 80, `frames 0 to 2 span ${span} ms`);

    // back from the "bridge": the first frame as a server frame (not masked), then a ping
    const echoed = Buffer.concat([hex('82 7e 00aa'), bytes.subarray(8, 178)]);
    p.server.write(Buffer.concat([echoed, hex('89 02 6869')]));
    await until(() => gen.stats().received === 1 && p.received().length >= 3 * 178 + 8, 2000, 'the echo counted and the ping answered');
    const s = gen.stats();
    assert.equal(s.sent, 3);
    assert.equal(s.sentInWindow, 3);
    assert.equal(s.receivedInWindow, 1);
    assert.equal(s.pings, 1);
    assert.equal(s.rtt.samples, 1);
    assert.ok(s.rtt.max > 0 && s.rtt.max < 2000, `round trip ${s.rtt.max} ms`);
    // the pong: FIN + pong, masked (zero key), the ping's payload
    assert.equal(p.received().subarray(3 * 178).toString('hex'), hex('8a 82 00000000 6869').toString('hex'));

    // a close frame from the bridge ends the lane, counted as closed
    p.server.write(hex('88 02 03e8'));
    await until(() => gen.stats().closed === 1, 2000, 'the close counted');
  } finally {
    gen.close();
    gen.close(); // idempotent
    p.close();
  }
});

test('native load generator, TURN framing: ChannelData on channel 0x4000 padded to 4 bytes, as bench/turn.ts sends it; ChannelData back is timed, a STUN message skipped', async () => {
  const native = loadNativeLoadGen();
  assert.ok(typeof native !== 'string', String(native));
  const gen = new NativeLoadGen(native, 170, 'turn');
  const p = await pair();
  try {
    assert.equal(gen.add(p.client, 3), true);
    const before = monotonicMs();
    await gen.pace(40, 0, 10_000);
    await until(() => p.received().length >= 2 * 176, 2000, 'two ChannelData messages');
    const bytes = p.received();
    assert.equal(bytes.length, 2 * 176);
    for (let n = 0; n < 2; n++) {
      const f = bytes.subarray(n * 176, (n + 1) * 176);
      // channel 0x4000, length 170, then the data: send time, lane, frame number, 0xff, and 2 bytes of padding
      assert.equal(f.subarray(0, 4).toString('hex'), '400000aa');
      const sentAt = f.readDoubleLE(4);
      assert.ok(sentAt >= before - 1 && sentAt <= monotonicMs() + 1, `sent at ${sentAt}`);
      assert.equal(f.readUInt32LE(12), 3);
      assert.equal(f.readUInt32LE(16), n);
      assert.ok(f.subarray(20, 174).every((b) => b === 0xff));
    }
    // coturn relays the peer's echo back as ChannelData; a STUN message (20-byte header, 4 bytes of attributes) in between is skipped
    const stun = hex('0113 0004 2112a442 000000000000000000000000 00000000');
    p.server.write(Buffer.concat([stun, bytes.subarray(0, 176), bytes.subarray(176)]));
    await until(() => gen.stats().received === 2, 2000, 'both echoes counted');
    const s = gen.stats();
    assert.equal(s.rtt.samples, 2);
    assert.equal(s.closed, 0);
  } finally {
    gen.close();
    p.close();
  }
});

/**
 * While pacing, the generator looks at its sockets every `pollUs` (bench --load-poll-us) instead of
 * being woken by each frame; a round trip is still timed from the kernel's receive time of the echo,
 * not from when the generator got to it. The "bridge" here echoes every frame at once and pings right
 * after: the pong shows when the generator looked.
 */
async function pollRun(pollUs: number): Promise<{ rttP50: number; samples: number; pongDelays: number[] }> {
  const native = loadNativeLoadGen();
  assert.ok(typeof native !== 'string', String(native));
  const gen = new NativeLoadGen(native, 160, 'websocket', pollUs);
  const p = await pair();
  // as ws's sockets: without Nagle (a pong held back behind a delayed ACK would hold up the next frame)
  p.server.setNoDelay(true);
  p.client.setNoDelay(true);
  const pongDelays: number[] = [];
  let pingAt = 0;
  let seen = 0;
  p.server.on('data', () => {
    const bytes = p.received();
    while (seen < bytes.length) {
      if (bytes[seen] === 0x82 && seen + 178 <= bytes.length) {
        // a frame: echoed as a server frame, with a ping behind it in the same write (one ping
        // in flight at a time)
        const echo = Buffer.concat([hex('82 7e 00aa'), bytes.subarray(seen + 8, seen + 178)]);
        if (pingAt === 0) {
          pingAt = monotonicMs();
          p.server.write(Buffer.concat([echo, hex('89 00')]));
        } else p.server.write(echo);
        seen += 178;
      } else if (bytes[seen] === 0x8a && seen + 6 <= bytes.length) {
        pongDelays.push(monotonicMs() - pingAt);
        pingAt = 0;
        seen += 6;
      } else break;
    }
  });
  try {
    assert.equal(gen.add(p.client, 1), true);
    // measured from 100 ms on: the kernel turns receive timestamps on a moment after the first
    // socket asks (until then a read is timed when it is made)
    await gen.pace(700, 100, 10_000);
    await new Promise((r) => setTimeout(r, 50));
    const s = gen.stats();
    return { rttP50: s.rtt.p50, samples: s.rtt.samples, pongDelays };
  } finally {
    gen.close();
    p.close();
  }
}

test('native load generator --load-poll-us: while pacing it looks every interval, not at each frame; round trips from the kernel receive time', async () => {
  const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
  const polled = await pollRun(10_000);
  assert.ok(polled.samples >= 25, `samples ${polled.samples}`);
  assert.ok(polled.pongDelays.length >= 10, `pongs ${polled.pongDelays.length}`);
  const woken = await pollRun(0);
  assert.ok(woken.pongDelays.length >= 10, `pongs ${woken.pongDelays.length}`);
  // polling, the ping waits for the generator's next look (the frames go out on a look, their echo
  // and the ping arrive just after it: close to the whole 10 ms); woken, it is answered at once
  const show = (a: number[]): string => a.map((d) => d.toFixed(1)).join(' ');
  assert.ok(mean(polled.pongDelays) >= 4, `polling: pong delays ${show(polled.pongDelays)} ms`);
  assert.ok(mean(polled.pongDelays) >= mean(woken.pongDelays) + 3, `polling: pong delays ${show(polled.pongDelays)} ms; woken: ${show(woken.pongDelays)} ms`);
  // the echo waited just as long in the socket, and the round trip does not include it (timed from
  // the kernel's receive time, else its median would be close to 10 ms)
  assert.ok(polled.rttP50 < 3, `polling: round trip p50 ${polled.rttP50} ms`);
  assert.ok(woken.rttP50 < 3, `woken: round trip p50 ${woken.rttP50} ms`);
});

/** a client (masked) WebSocket frame with `key`, as the bridge's media leg writes it */
function masked(op: number, payload: Buffer, key: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | op, 0x80 | len]) : Buffer.from([0x80 | op, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  return Buffer.concat([head, key, body]);
}

test('native echo peer (--ws-echo): each masked binary frame goes back unmasked, a ping gets its pong, text is skipped, a close ends the connection', async () => {
  const native = loadNativeLoadGen();
  assert.ok(typeof native !== 'string', `the native load generator must be built for the tests: ${String(native)}`);
  const echo = new NativeLoadGen(native, 160, 'echo', 0);
  // the echo holds the server's side; the test is the bridge's media leg (the client)
  const p = await pair();
  try {
    assert.equal(echo.add(p.server, 0), true);
    const leg = p.client;
    const back: Buffer[] = [];
    leg.on('data', (d: Buffer) => back.push(d));
    let ended = false;
    leg.on('end', () => (ended = true));
    const key = hex('11223344');
    const audio = Buffer.alloc(160, 0xff);
    audio.write('tone', 0);
    const wire = Buffer.concat([
      masked(0x2, audio, key),
      masked(0x1, Buffer.from('MEDIA_XOFF'), key), // text: skipped
      masked(0x2, Buffer.from('hello'), hex('a0b0c0d0')),
      masked(0x9, Buffer.from('hi'), key),
    ]);
    // split inside the first frame's payload: the echo waits for the rest
    leg.write(wire.subarray(0, 50));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(Buffer.concat(back).length, 0, 'nothing back before a whole frame');
    leg.write(wire.subarray(50));
    const want = Buffer.concat([hex('82 7e 00a0'), audio, hex('82 05'), Buffer.from('hello'), hex('8a 02 6869')]);
    await until(() => Buffer.concat(back).length >= want.length, 2000, 'the echo');
    assert.equal(Buffer.concat(back).toString('hex'), want.toString('hex'));
    assert.equal(echo.stats().received, 2);
    assert.equal(echo.stats().pings, 1);

    // the bridge closes the leg: the echo ends the connection, as Asterisk does
    leg.write(masked(0x8, hex('03e8'), key));
    await until(() => ended, 2000, 'the echo ends the connection');
    assert.equal(echo.stats().closed, 1);
  } finally {
    echo.close();
    p.close();
  }
});
