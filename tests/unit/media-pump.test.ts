/**
 * The native media pump (native/pump.cc through bridge/server/PumpedAudio.ts), byte for byte: a
 * terminal speaking raw WebSocket over loopback TCP on one side, a UDP socket standing for the
 * media server on the other. Golden bytes both ways (RTP and raw legs), pings and pongs, the
 * handback of what the pump does not handle (close, a bad frame) to ws, the rate limit, and
 * JavaScript taking the sockets back when it writes or closes them.
 *
 * `npm test` builds the module (scripts/node.sh); this test fails if it is not there.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { connect, type Socket as TcpSocket, type AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { MediaPump, loadNativePump } from '../../bridge/server/MediaPump.ts';
import { createLogger } from '../../bridge/logger.ts';
import { PUMP_CONVERT, PUMP_STAT, pumpConversion, type PumpConvert, type PumpedAudio, type NativePump, type PumpedAudioOptions, type PumpedAudioState } from '../../bridge/server/PumpedAudio.ts';
import { AudioConverter } from '../../bridge/media/AudioConverter.ts';
import { L16_16K, L16_8K, PCMU, type AudioCodec } from '../../bridge/protocol/codecs.ts';
import { rawSocket } from '../../bridge/server/wsFrames.ts';
import type { PumpLeg, RtpSenderState } from '../../plugin/driver.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const MASK = hex('37fa213d');

/** a client frame: FIN, opcode, masked with MASK */
function masked(opcode: number, payload: Buffer): Buffer {
  assert.ok(payload.length < 0x10000);
  const h = payload.length < 126 ? 2 : 4;
  const out = Buffer.alloc(h + 4 + payload.length);
  out[0] = 0x80 | opcode;
  if (h === 2) {
    out[1] = 0x80 | payload.length;
  } else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(payload.length, 2);
  }
  MASK.copy(out, h);
  for (let i = 0; i < payload.length; i++) out[h + 4 + i] = payload[i]! ^ MASK[i & 3]!;
  return out;
}

/** Waits until `ready()` holds, woken by notify() (data arrived) or failing after `ms`. */
class Arrivals {
  private wake: (() => void) | null = null;

  notify(): void {
    this.wake?.();
  }

  async until(ready: () => boolean, ms: number, what: () => string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${what()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }
}

/** A terminal speaking raw WebSocket bytes: everything it receives after the handshake, in order. */
class RawTerminal {
  readonly socket: TcpSocket;
  private buf = Buffer.alloc(0);
  private readonly arrivals = new Arrivals();

  private constructor(socket: TcpSocket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.arrivals.notify();
    });
  }

  /** a socket already past its handshake */
  static wrap(socket: TcpSocket): RawTerminal {
    return new RawTerminal(socket);
  }

  static async open(port: number): Promise<RawTerminal> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const t = new RawTerminal(socket);
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const head = await t.until((b) => b.indexOf('\r\n\r\n'), 2000, 4);
    assert.match(head.toString(), /^HTTP\/1\.1 101 /);
    return t;
  }

  /** waits for `end(buf)` >= 0, then takes buf up to it, and `skip` bytes more */
  private async until(end: (b: Buffer) => number, ms = 2000, skip = 0): Promise<Buffer> {
    await this.arrivals.until(() => end(this.buf) >= 0, ms, () => `have ${this.buf.toString('hex')}`);
    const at = end(this.buf);
    const taken = this.buf.subarray(0, at);
    this.buf = this.buf.subarray(at + skip);
    return taken;
  }

  /** the next n bytes */
  take(n: number, ms = 2000): Promise<Buffer> {
    return this.until((b) => (b.length >= n ? n : -1), ms).then((b) => Buffer.from(b));
  }

  /** nothing more arrives within ms */
  async quiet(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(this.buf.toString('hex'), '', 'no more bytes');
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** the payload of the next server frame (unmasked, under 64 KiB) */
  async frame(ms = 2000): Promise<Buffer> {
    const h = await this.take(2, ms);
    const n = (h[1]! & 0x7f) === 126 ? (await this.take(2, ms)).readUInt16BE(0) : h[1]! & 0x7f;
    return this.take(n, ms);
  }
}

/** the media server's side: a UDP socket that keeps what it receives */
class Peer {
  readonly socket: UdpSocket = createSocket('udp4');
  private readonly got: Array<{ msg: Buffer; from: RemoteInfo }> = [];
  private readonly arrivals = new Arrivals();

  async open(): Promise<this> {
    this.socket.on('message', (msg, from) => {
      this.got.push({ msg, from });
      this.arrivals.notify();
    });
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    return this;
  }

  get port(): number {
    return this.socket.address().port;
  }

  async next(ms = 2000): Promise<Buffer> {
    await this.arrivals.until(() => this.got.length > 0, ms, () => 'no datagram');
    return this.got.shift()!.msg;
  }

  async none(ms: number): Promise<number> {
    await new Promise((r) => setTimeout(r, ms));
    const n = this.got.length;
    this.got.length = 0;
    return n;
  }

  send(b: Buffer, port: number): void {
    this.socket.send(b, port, '127.0.0.1');
  }
}

let native: NativePump;
/** the process's pump, as the bridge uses it (it routes the native module's handbacks) */
let pump: MediaPump;
let wss: WebSocketServer;
let port = 0;

before(async () => {
  const r = loadNativePump();
  assert.ok('pump' in r, `the native media pump must be built for the tests: ${'error' in r ? r.error : ''}`);
  native = r.pump;
  pump = MediaPump.forMode('on', createLogger('silent'))!;
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  port = (wss.address() as AddressInfo).port;
});

after(async () => {
  for (const c of wss.clients) c.terminate();
  await new Promise((r) => wss.close(r));
});

interface Rig {
  terminal: RawTerminal;
  ws: WebSocket;
  legSocket: UdpSocket;
  peer: Peer;
  pumped: PumpedAudio;
  released: PumpedAudioState[];
  legResumed: Array<RtpSenderState | null>;
  messages: Buffer[];
  close(): Promise<void>;
}

const OPTIONS: PumpedAudioOptions = {
  codecId: 0,
  stream: 0,
  bytesPerSample: 1,
  seq: 5,
  timestamp: 1000,
  marker: true,
  maxFrameBytes: 4096,
  framesPerSecond: 100,
  burst: 50,
  tokens: 50,
  highWaterBytes: 65536,
  alive: true,
};

async function rig(opts: { rtp?: RtpSenderState | null; options?: Partial<PumpedAudioOptions>; connected?: boolean; expectPeerPort?: boolean; legBytesPerSample?: number; maxPayload?: number } = {}): Promise<Rig> {
  const peer = await new Peer().open();
  const legSocket = createSocket('udp4');
  await new Promise<void>((r) => legSocket.bind(0, '127.0.0.1', r));
  if (opts.connected) await new Promise<void>((r) => legSocket.connect(peer.port, '127.0.0.1', r));
  const accepted = once(wss, 'connection');
  const terminal = await RawTerminal.open(port);
  const [ws] = (await accepted) as [WebSocket];
  const messages: Buffer[] = [];
  ws.on('message', (d: Buffer) => messages.push(d));
  const released: PumpedAudioState[] = [];
  const legResumed: Array<RtpSenderState | null> = [];
  const rtp = opts.rtp === undefined ? { payloadType: 0, seq: 0x1234, timestamp: 0x01020304, ssrc: 0xcafebabe, first: true } : opts.rtp;
  const leg: PumpLeg = {
    kind: 'udp',
    socket: legSocket,
    remoteHost: opts.connected ? '' : '127.0.0.1',
    remotePort: opts.connected ? 0 : peer.port,
    expectPort: opts.expectPeerPort ? peer.port : 0,
    bytesPerSample: opts.legBytesPerSample ?? 1,
    maxPayload: opts.maxPayload ?? 1024,
    rtp,
    resume: (s) => legResumed.push(s),
  };
  const pumped = pump.attach(ws, rawSocket(ws)!, leg, { ...OPTIONS, ...opts.options }, (s) => released.push(s));
  assert.ok(pumped, 'the pump took the connection (Node internals as expected)');
  return {
    terminal,
    ws,
    legSocket,
    peer,
    pumped,
    released,
    legResumed,
    messages,
    async close() {
      pumped.release();
      terminal.socket.destroy();
      ws.terminate();
      legSocket.close();
      peer.socket.close();
    },
  };
}

test('the native module loads, and a connection is held while pumped and let go after', async () => {
  const r = await rig();
  assert.equal(native.attached(), 1);
  r.pumped.release();
  assert.equal(native.attached(), 0);
  r.pumped.release(); // idempotent
  assert.equal(r.released.length, 1);
  await r.close();
});

test('terminal to media server: masked frames become RTP, golden bytes (marker on the first, seq +1, timestamp + samples)', async () => {
  const r = await rig();
  try {
    const frame = hex('10 00 00 01 0007 000000a0 deadbeef');
    r.terminal.write(masked(2, frame));
    assert.equal((await r.peer.next()).toString('hex'), hex('8080 1234 01020304 cafebabe deadbeef').toString('hex'));
    // two frames in one write, the second split off into a later write
    const two = Buffer.concat([masked(2, hex('10 00 00 00 0008 000000a4 01020304 05')), masked(2, hex('10 00 00 00 0009 000000a9 aabb'))]);
    r.terminal.write(two.subarray(0, 17));
    await new Promise((res) => setTimeout(res, 30));
    r.terminal.write(two.subarray(17));
    assert.equal((await r.peer.next()).toString('hex'), hex('8000 1235 01020308 cafebabe 0102030405').toString('hex'));
    assert.equal((await r.peer.next()).toString('hex'), hex('8000 1236 0102030d cafebabe aabb').toString('hex'));
    r.pumped.release();
    assert.deepEqual(r.legResumed, [{ payloadType: 0, seq: 0x1237, timestamp: 0x0102030f, ssrc: 0xcafebabe, first: false }]);
  } finally {
    await r.close();
  }
});

test('media server to terminal: RTP becomes a WebSocket frame with the confmux header, golden bytes; other payload types are dropped', async () => {
  const r = await rig();
  try {
    const to = r.legSocket.address().port;
    r.peer.send(hex('8000 0001 00000010 11223344 aabbcc'), to);
    assert.equal((await r.terminal.take(15)).toString('hex'), hex('820d 10 00 00 01 0005 000003e8 aabbcc').toString('hex'));
    // payload type 8 (PCMA) is not the leg's: dropped
    r.peer.send(hex('8008 0002 00000013 11223344 aabbcc'), to);
    // CSRC count 1 and padding 2: the payload is what lies between
    r.peer.send(hex('a100 0003 00000016 11223344 55667788 ddee 0002'), to);
    assert.equal((await r.terminal.take(14)).toString('hex'), hex('820c 10 00 00 00 0006 000003eb ddee').toString('hex'));
    await r.terminal.quiet(100);
    r.pumped.release();
    assert.deepEqual(r.released[0], { seq: 7, timestamp: 1005, marker: false, tokens: r.released[0]!.tokens, floodTokens: 0, alive: true, upLast: 0, downLast: 0 });
  } finally {
    await r.close();
  }
});

test('a raw leg on a connected socket (FreeSWITCH unicast, the UDP echo): payloads with no header both ways, only the peer port accepted', async () => {
  const r = await rig({ rtp: null, connected: true, expectPeerPort: true, options: { codecId: 1, bytesPerSample: 2, stream: 1 } });
  try {
    r.terminal.write(masked(2, hex('10 01 01 00 0001 00000000 0102 0304')));
    assert.equal((await r.peer.next()).toString('hex'), '01020304');
    r.peer.send(hex('0a0b0c0d'), r.legSocket.address().port);
    assert.equal((await r.terminal.take(16)).toString('hex'), hex('820e 10 01 01 01 0005 000003e8 0a0b0c0d').toString('hex'));
    // from another port: not the media server's
    const stranger = createSocket('udp4');
    stranger.send(hex('0e0f'), r.legSocket.address().port, '127.0.0.1');
    await r.terminal.quiet(100);
    stranger.close();
    r.pumped.release();
    assert.deepEqual(r.legResumed, [], 'a raw leg has no RTP state to resume');
    assert.equal(r.released[0]!.timestamp, 1002, 'timestamps advance by samples (2 bytes each)');
  } finally {
    await r.close();
  }
});

test('a raw L16 leg for a u-law terminal (FreeSWITCH unicast): the pump converts both ways byte for byte as the JavaScript converter does', async () => {
  const { AudioConverter } = await import('../../bridge/media/AudioConverter.ts');
  const { PCMU, L16_8K } = await import('../../bridge/protocol/codecs.ts');
  const r = await rig({ rtp: null, connected: true, options: { codecId: 0, bytesPerSample: 1, convert: PUMP_CONVERT.ulaw_l16n } });
  try {
    const ulaw = hex('ff 00 80 7f 01 fe 55 aa');
    r.terminal.write(masked(2, Buffer.concat([hex('10 00 00 00 0001 00000000'), ulaw])));
    const up = new AudioConverter(PCMU, L16_8K).convert(ulaw);
    assert.equal((await r.peer.next()).toString('hex'), up.toString('hex'), 'u-law decoded to L16 little-endian, 2 bytes a sample');
    const linear = Buffer.alloc(12);
    [0, 1000, -1000, 32767, -32768, 123].forEach((v, i) => linear.writeInt16LE(v, i * 2));
    r.peer.send(linear, r.legSocket.address().port);
    const down = new AudioConverter(L16_8K, PCMU).convert(linear);
    assert.equal((await r.terminal.take(2 + 10 + 6)).toString('hex'), Buffer.concat([hex('8210 10 00 00 01 0005 000003e8'), down]).toString('hex'), 'encoded to u-law, 6 samples');
    r.pumped.release();
    assert.equal(r.released[0]!.timestamp, 1006, 'the terminal\'s timestamps count u-law samples');
  } finally {
    await r.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Conversions: what the pump sends either way must be, byte for byte, what AudioConverter gives for
// the same sequence of frames, the sample carried across frames (`last`) included, also when the
// call moves from JavaScript to the pump and back.

/** L16 little-endian of the samples */
function l16(...samples: number[]): Buffer {
  const b = Buffer.alloc(samples.length * 2);
  samples.forEach((v, i) => b.writeInt16LE(v, i * 2));
  return b;
}

/** n bytes of audio-like content: a tone with noise, reaching both extremes of L16 */
function audioBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 1 < n; i += 2) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const v = Math.round(20000 * Math.sin(i / 7 + seed)) + ((x >>> 0) % 24001) - 12000;
    b.writeInt16LE(Math.max(-32768, Math.min(32767, v)), i);
  }
  if (n & 1) b[n - 1] = x & 0xff;
  return b;
}

/** a media frame from the terminal: confmux header (codec, seq, timestamp 0), payload */
function fromTerminal(codecId: number, seq: number, payload: Buffer): Buffer {
  const h = hex('10 00 00 00 0000 00000000');
  h[2] = codecId;
  h.writeUInt16BE(seq, 4);
  return masked(2, Buffer.concat([h, payload]));
}

interface ConversionCase {
  what: string;
  convert: PumpConvert;
  terminal: AudioCodec;
  leg: AudioCodec;
  /** an RTP leg (u-law, payload type 0), else raw payloads */
  rtp: boolean;
}

const CONVERSIONS: ConversionCase[] = [
  { what: 'an L16/16000 terminal on an RTP u-law leg (Asterisk, transport rtp)', convert: PUMP_CONVERT.l16w_ulaw, terminal: L16_16K, leg: PCMU, rtp: true },
  { what: 'an L16/16000 terminal on a raw L16/8000 leg (FreeSWITCH unicast)', convert: PUMP_CONVERT.l16w_l16n, terminal: L16_16K, leg: L16_8K, rtp: false },
  { what: 'a u-law terminal on a raw L16/16000 leg', convert: PUMP_CONVERT.ulaw_l16w, terminal: PCMU, leg: L16_16K, rtp: false },
];

const RTP_START: RtpSenderState = { payloadType: 0, seq: 0x1234, timestamp: 0x01020304, ssrc: 0xcafebabe, first: true };

function convertRig(c: ConversionCase, upLast: number, downLast: number, maxPayload = 1024): Promise<Rig> {
  return rig({
    rtp: c.rtp ? RTP_START : null,
    connected: !c.rtp,
    legBytesPerSample: c.leg.bytesPerSample,
    maxPayload,
    options: { codecId: c.terminal.id, bytesPerSample: c.terminal.bytesPerSample, convert: c.convert, upLast, downLast },
  });
}

/** a datagram from the leg's media server: payload, behind an RTP header (seq i) on an RTP leg */
function fromLeg(c: ConversionCase, i: number, payload: Buffer): Buffer {
  if (!c.rtp) return payload;
  const h = hex('8000 0000 00000000 11223344');
  h.writeUInt16BE(i, 2);
  h.writeUInt32BE(i * 160, 4);
  return Buffer.concat([h, payload]);
}

assert.deepEqual(
  CONVERSIONS.map((c) => pumpConversion(c.terminal, c.leg)),
  CONVERSIONS.map((c) => c.convert),
);

for (const c of CONVERSIONS) {
  test(`${c.what}: frames both ways are AudioConverter's bytes, the carried sample going from JavaScript to the pump and back`, async () => {
    // what JavaScript alone makes of the sequence
    const up = new AudioConverter(c.terminal, c.leg);
    const down = new AudioConverter(c.leg, c.terminal);
    // the call's own converters: frame 0 in JavaScript, frames 1-3 on the pump, frame 4 in JavaScript again
    const callUp = new AudioConverter(c.terminal, c.leg);
    const callDown = new AudioConverter(c.leg, c.terminal);
    // a 20 ms frame, one with an odd length and a short one, then 20 ms again
    const upFrames = [c.terminal.frameBytes, c.terminal.frameBytes, c.terminal.frameBytes - 3, 6, c.terminal.frameBytes].map((n, i) => audioBytes(n, 11 + i));
    const downFrames = [c.leg.frameBytes, c.leg.frameBytes, c.leg.frameBytes - 1, 5, c.leg.frameBytes].map((n, i) => audioBytes(n, 101 + i));
    const wantUp = upFrames.map((f) => Buffer.from(up.convert(f)).toString('hex'));
    const wantDown = downFrames.map((f) => Buffer.from(down.convert(f)).toString('hex'));
    assert.equal(Buffer.from(callUp.convert(upFrames[0]!)).toString('hex'), wantUp[0]);
    assert.equal(Buffer.from(callDown.convert(downFrames[0]!)).toString('hex'), wantDown[0]);

    const r = await convertRig(c, callUp.carried, callDown.carried);
    try {
      let rtpTimestamp = RTP_START.timestamp;
      for (let i = 1; i <= 3; i++) {
        r.terminal.write(fromTerminal(c.terminal.id, i, upFrames[i]!));
        const got = await r.peer.next();
        if (c.rtp) {
          assert.equal(got.readUInt16BE(2), RTP_START.seq + i - 1, 'RTP seq');
          assert.equal(got.readUInt32BE(4), rtpTimestamp, 'RTP timestamp');
          rtpTimestamp += (got.length - 12) / c.leg.bytesPerSample;
        }
        assert.equal(got.subarray(c.rtp ? 12 : 0).toString('hex'), wantUp[i], `frame ${i} to the media server`);
      }
      let timestamp = OPTIONS.timestamp;
      for (let i = 1; i <= 3; i++) {
        r.peer.send(fromLeg(c, i, downFrames[i]!), r.legSocket.address().port);
        const frame = await r.terminal.frame();
        assert.equal(frame.readUInt32BE(6), timestamp, 'the terminal\'s timestamp');
        timestamp += (frame.length - 10) / c.terminal.bytesPerSample;
        assert.equal(frame.subarray(10).toString('hex'), wantDown[i], `frame ${i} to the terminal`);
      }
      r.pumped.release();
      const state = r.released[0]!;
      assert.equal(state.timestamp, timestamp, 'the terminal\'s timestamps count samples of its codec');
      if (c.rtp) assert.equal(r.legResumed[0]!.timestamp, rtpTimestamp, 'RTP timestamps count samples of the leg\'s format');
      callUp.carried = state.upLast;
      callDown.carried = state.downLast;
    } finally {
      await r.close();
    }
    assert.equal(Buffer.from(callUp.convert(upFrames[4]!)).toString('hex'), wantUp[4], 'JavaScript goes on from the pump\'s carried sample');
    assert.equal(Buffer.from(callDown.convert(downFrames[4]!)).toString('hex'), wantDown[4]);
  });
}

test('conversions, golden bytes of one short frame each way (arithmetic shift of negative sums, odd tails ignored)', async () => {
  // L16/16000 [1000, 3000, -2, -5] and a stray byte: pairs 2000 and -4 (-7 >> 1, not -3)
  const wide = Buffer.concat([l16(1000, 3000, -2, -5), hex('7f')]);
  // u-law ff (0) and 00 (-32124), with -3 carried: (-3 + 0) >> 1 = -2, 0, -16062, -32124
  const ulaw = hex('ff 00');
  const ulawUp = hex('feff 0000 42c1 8482');
  // L16/8000 [100, -101] and a stray byte, with -3 carried: 48, 100, -1, -101
  const narrow = Buffer.concat([l16(100, -101), hex('55')]);
  const cases: Array<[ConversionCase, Buffer, string, Buffer, string]> = [
    [CONVERSIONS[0]!, wide, 'bf7e', ulaw, ulawUp.toString('hex')],
    [CONVERSIONS[1]!, wide, 'd007fcff', narrow, '30006400ffff9bff'],
    [CONVERSIONS[2]!, ulaw, ulawUp.toString('hex'), wide, 'bf7e'],
  ];
  for (const [c, upIn, upOut, downIn, downOut] of cases) {
    const r = await convertRig(c, -3, -3);
    try {
      r.terminal.write(fromTerminal(c.terminal.id, 1, upIn));
      assert.equal((await r.peer.next()).subarray(c.rtp ? 12 : 0).toString('hex'), upOut, `${c.what}: to the media server`);
      r.peer.send(fromLeg(c, 1, downIn), r.legSocket.address().port);
      assert.equal((await r.terminal.frame()).subarray(10).toString('hex'), downOut, `${c.what}: to the terminal`);
    } finally {
      await r.close();
    }
  }
});

test('conversions: a frame too large for the leg once converted is dropped, its carried sample kept; a frame converted to nothing goes to the leg empty, as in JavaScript, but not to the terminal', async () => {
  // u-law to L16/16000 makes 4 bytes of each: 16 bytes fit a 64-byte leg, 17 do not
  const c = CONVERSIONS[2]!;
  const js = new AudioConverter(c.terminal, c.leg);
  const frames = [audioBytes(16, 1), audioBytes(17, 2), audioBytes(16, 3)];
  const want = frames.map((f) => Buffer.from(js.convert(f))).filter((b) => b.length <= 64).map((b) => b.toString('hex'));
  const r = await convertRig(c, 0, 0, 64);
  try {
    frames.forEach((f, i) => r.terminal.write(fromTerminal(c.terminal.id, i, f)));
    assert.deepEqual([(await r.peer.next()).toString('hex'), (await r.peer.next()).toString('hex')], want);
    assert.equal(await r.peer.none(50), 0, 'the large one was dropped');
    // towards the terminal the pump relays no empty payload (converted or not; JavaScript would send
    // a frame with none): 3 bytes of L16/16000 are less than one pair
    r.peer.send(hex('010203'), r.legSocket.address().port);
    r.peer.send(l16(-2, -5), r.legSocket.address().port);
    assert.equal((await r.terminal.frame()).toString('hex'), hex('10 00 00 01 0005 000003e8 7e').toString('hex'));
  } finally {
    await r.close();
  }
  // 3 bytes of L16/16000 are less than one pair: an RTP packet with no payload, the timestamp unchanged
  const rtp = await convertRig(CONVERSIONS[0]!, 0, 0);
  try {
    rtp.terminal.write(fromTerminal(L16_16K.id, 1, hex('010203')));
    rtp.terminal.write(fromTerminal(L16_16K.id, 2, l16(1, 2)));
    assert.equal((await rtp.peer.next()).toString('hex'), hex('8080 1234 01020304 cafebabe').toString('hex'));
    assert.equal((await rtp.peer.next()).toString('hex'), hex('8000 1235 01020304 cafebabe ff').toString('hex'));
  } finally {
    await rtp.close();
  }
});

test("pings from the terminal are answered; the bridge's heartbeat pings through the pump and sees pongs", async () => {
  const r = await rig();
  try {
    r.terminal.write(masked(9, Buffer.from('hi')));
    assert.equal((await r.terminal.take(4)).toString('hex'), '8a026869');
    assert.equal(r.pumped.heartbeat(), true, 'alive when attached');
    assert.equal((await r.terminal.take(2)).toString('hex'), '8900');
    assert.equal(r.pumped.heartbeat(), false, 'no pong since the last ping');
    await r.terminal.take(2);
    r.terminal.write(masked(10, Buffer.alloc(0)));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.pumped.heartbeat(), true, 'a pong came');
    assert.equal(native.attached(), 1, 'still pumped');
  } finally {
    await r.close();
  }
});

test('a close frame is handed back to ws, which closes the connection as it would have', async () => {
  const r = await rig();
  try {
    r.terminal.write(masked(2, hex('10 00 00 00 0001 00000000 aa')));
    await r.peer.next();
    const closed = once(r.ws, 'close');
    const payload = Buffer.concat([hex('03e8'), Buffer.from('bye')]);
    r.terminal.write(masked(8, payload));
    const [code, reason] = (await closed) as [number, Buffer];
    assert.equal(code, 1000);
    assert.equal(reason.toString(), 'bye');
    assert.equal(native.attached(), 0, 'handed back');
    assert.equal(r.released.length, 1);
    // ws answered the close: 0x88, length 2 + 'bye'... (ws echoes the code)
    const echo = await r.terminal.take(4);
    assert.equal(echo[0], 0x88);
  } finally {
    await r.close();
  }
});

test('a frame the bridge refuses (another codec) reaches ws unchanged, with everything after it', async () => {
  const r = await rig();
  try {
    const bad = hex('10 00 01 00 0001 00000000 0102');
    const next = hex('10 00 00 00 0002 00000001 0304');
    r.terminal.write(Buffer.concat([masked(2, bad), masked(2, next)]));
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(native.attached(), 0);
    assert.deepEqual(r.messages.map((m) => m.toString('hex')), [bad.toString('hex'), next.toString('hex')], 'ws got both frames, unmasked correctly');
    assert.equal(await r.peer.none(50), 0, 'neither went to the media server from the pump');
  } finally {
    await r.close();
  }
});

test('frames beyond the rate limit are dropped', async () => {
  const r = await rig({ options: { framesPerSecond: 10, burst: 3, tokens: 3 } });
  try {
    const frames: Buffer[] = [];
    for (let i = 0; i < 10; i++) frames.push(masked(2, hex(`10 00 00 00 00${i.toString(16).padStart(2, '0')} 00000000 aa`)));
    const before = native.stats()[PUMP_STAT.droppedRateLimit]!;
    r.terminal.write(Buffer.concat(frames));
    const got = await r.peer.none(200);
    assert.ok(got >= 3 && got <= 4, `3 (burst) or 4 frames passed, not ${got}`);
    assert.ok(native.stats()[PUMP_STAT.droppedRateLimit]! - before >= 6, 'the rest counted as dropped for the rate limit');
  } finally {
    await r.close();
  }
});

test('one read bringing more than server.mediaPumpStaleMs (100 ms) of a terminal\'s audio: the older frames are dropped and counted, the RTP sequence and timestamp skip them, golden bytes', async () => {
  // 8 kHz PCMU: 100 ms is 800 samples, the newest 5 frames of 160; one write, so one read
  const r = await rig({ options: { sampleRate: 8000 } });
  try {
    const frames: Buffer[] = [];
    for (let i = 1; i <= 15; i++) frames.push(masked(2, Buffer.concat([hex(`10 00 00 00 00${i.toString(16).padStart(2, '0')} 00000000`), Buffer.alloc(160, i)])));
    const before = native.stats()[PUMP_STAT.droppedStale]!;
    r.terminal.write(Buffer.concat(frames));
    for (let i = 11; i <= 15; i++) {
      const got = await r.peer.next();
      // seq 0x1234 + (i - 1), timestamp 0x01020304 + (i - 1) * 160; the marker on the first sent
      const seq = (0x1234 + i - 1).toString(16);
      const ts = (0x01020304 + (i - 1) * 160).toString(16).padStart(8, '0');
      assert.equal(got.subarray(0, 12).toString('hex'), `80${i === 11 ? '80' : '00'}${seq}${ts}cafebabe`, `frame ${i}`);
      assert.ok(got.subarray(12).equals(Buffer.alloc(160, i)), `frame ${i}'s payload`);
    }
    assert.equal(await r.peer.none(100), 0);
    assert.equal(native.stats()[PUMP_STAT.droppedStale]! - before, 10);
    // a frame on its own afterwards is not stale: it follows on
    r.terminal.write(masked(2, Buffer.concat([hex('10 00 00 00 0010 00000000'), Buffer.alloc(160, 16)])));
    assert.equal((await r.peer.next()).subarray(0, 12).toString('hex'), `8000${(0x1234 + 15).toString(16)}${(0x01020304 + 15 * 160).toString(16).padStart(8, '0')}cafebabe`);
  } finally {
    await r.close();
  }
});

test('JavaScript writing to the socket takes it back first: order kept, ws reads again', async () => {
  const r = await rig();
  try {
    r.peer.send(hex('8000 0001 00000010 11223344 aabbcc'), r.legSocket.address().port);
    await new Promise((res) => setTimeout(res, 50));
    const handle = (r.ws as unknown as { _socket: { _handle: object } })._socket._handle;
    const tcpPrototype = Object.getPrototypeOf((r.terminal.socket as unknown as { _handle: object })._handle) as object;
    assert.notEqual(Object.getPrototypeOf(handle), tcpPrototype, 'guarded while pumped');
    r.ws.send(Buffer.from('zz'));
    assert.equal(native.attached(), 0, 'the write released the pump');
    assert.equal(Object.getPrototypeOf(handle), tcpPrototype, 'the handle has its own prototype back');
    assert.deepEqual(Object.getOwnPropertyNames(handle).filter((n) => n.startsWith('write')), [], 'no guard left on the handle');
    assert.equal((await r.terminal.take(15 + 4)).toString('hex'), hex('820d 10 00 00 01 0005 000003e8 aabbcc').toString('hex') + '82027a7a');
    // from now on frames from the terminal arrive as ws messages
    r.terminal.write(masked(2, hex('10 00 00 00 0001 00000000 aa')));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.messages.length, 1);
    assert.equal(await r.peer.none(50), 0);
  } finally {
    await r.close();
  }
});

test('closing the leg socket takes both sockets back; the terminal connection goes on under ws', async () => {
  const r = await rig();
  try {
    r.legSocket.close();
    assert.equal(native.attached(), 0);
    r.terminal.write(masked(2, hex('10 00 00 00 0001 00000000 aa')));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.messages.length, 1, 'ws reads the terminal again');
  } finally {
    r.pumped.release();
    r.terminal.socket.destroy();
    r.ws.terminate();
    r.peer.socket.close();
  }
});

test('the terminal going away hands the connection back: ws sees the close', async () => {
  const r = await rig();
  try {
    const closed = once(r.ws, 'close');
    r.terminal.socket.destroy();
    const [code] = (await closed) as [number];
    assert.equal(code, 1006);
    assert.equal(native.attached(), 0);
  } finally {
    r.legSocket.close();
    r.peer.socket.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Through the bridge: a terminal (the SDK) calling the echo stand-in whose leg is a UDP socket to
// an echo peer of this test (a stand-in for the media server's RTP port, named as such).

/** a metric's value in a /metrics text (0 when absent) */
function counter(text: string, line: string): number {
  const at = text.split('\n').find((l) => l.startsWith(`${line} `));
  return at ? Number(at.slice(line.length + 1)) : 0;
}

async function echoPeer(): Promise<{ port: number; close(): void }> {
  const s = createSocket('udp4');
  s.on('message', (msg, from) => s.send(msg, from.port, from.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => s.close() };
}

async function bridgeOnEcho(limits: Record<string, number> = {}, wsPeer?: string): Promise<{ url: string; server: import('../../bridge/server/BridgeServer.ts').BridgeServer; close(): Promise<void> }> {
  const { loadConfig } = await import('../../bridge/config.ts');
  const { createLogger } = await import('../../bridge/logger.ts');
  const { BridgeServer } = await import('../../bridge/server/BridgeServer.ts');
  const { EchoDriver } = await import('../../plugin/echo/EchoDriver.ts');
  const peer = await echoPeer();
  const config = loadConfig({ env: {}, overrides: { server: { host: '127.0.0.1', port: 0, plain: true }, asterisk: { password: 'unused' }, log: { level: 'silent' }, limits } });
  const driver = new EchoDriver({ password: 'pw', ...(wsPeer ? { wsPeer } : { udpPeer: { host: '127.0.0.1', port: peer.port } }) });
  await driver.start();
  const server = new BridgeServer(config, driver, createLogger('silent'));
  const { port: p } = await server.listen();
  return {
    url: `ws://127.0.0.1:${p}/`,
    server,
    async close() {
      await server.close();
      await driver.close();
      peer.close();
    },
  };
}

test('bridge: a PCMU call on a UDP leg is pumped; its audio comes back; a text frame on it is refused with BAD_FRAME and ends the call', async () => {
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const b = await bridgeOnEcho();
  const t = createNodeTerminal({ url: b.url, number: '1001', password: 'pw' });
  try {
    await t.connect();
    await t.register();
    const call = await t.call('700', { codecs: ['PCMU/8000'] });
    await call.answered();
    const deadline = Date.now() + 3000;
    while (b.server.pumpedCalls !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.server.pumpedCalls, 1, 'the call is on the pump');
    const before = await b.server.metrics.registry.metrics();
    const back: string[] = [];
    call.on('audio', (p) => back.push(Buffer.from(p).toString('hex')));
    for (let i = 0; i < 5; i++) {
      call.sendAudio(Buffer.alloc(160, i + 1));
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(back, [1, 2, 3, 4, 5].map((i) => Buffer.alloc(160, i).toString('hex')), 'each payload came back through the pump, in order');
    // the delay the pump added, measured from the kernel's receive timestamps: there, and small on loopback
    const relay = await b.server.metrics.registry.metrics();
    for (const d of ['to_media_server', 'to_terminal']) {
      const p99 = counter(relay, `confmux_media_pump_relay_latency_seconds{direction="${d}",quantile="0.99"}`);
      assert.ok(p99 > 0 && p99 < 0.5, `${d} relay p99 ${p99} s`);
    }
    const ended = call.ended();
    call.sendRaw('not media');
    const info = await ended;
    assert.equal(info.reason, 'media_lost', JSON.stringify(info));
    assert.equal(b.server.pumpedCalls, 0);
    const metrics = await b.server.metrics.registry.metrics();
    // the media counters are the process's (earlier tests here pumped frames too): compare with before
    const delta = (line: string): number => counter(metrics, line) - counter(before, line);
    assert.equal(counter(metrics, 'confmux_refusals_total{code="BAD_FRAME"}'), 1);
    assert.equal(delta('confmux_media_frames_total{direction="from_terminal"}'), 5, 'the pump counted the frames it relayed');
    assert.equal(delta('confmux_media_frames_total{direction="to_terminal"}'), 5);
    assert.equal(delta('confmux_media_pump_handbacks_total'), 1);
  } finally {
    t.close();
    await b.close();
  }
});

test('bridge: the heartbeat reaches a pumped connection through the pump; a terminal that neither answers nor sends is cut off, one that sends is not', async () => {
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const b = await bridgeOnEcho({ heartbeatIntervalMs: 200 });
  const alive = createNodeTerminal({ url: b.url, number: '1002', password: 'pw' });
  const mute = createNodeTerminal({ url: b.url, number: '1003', password: 'pw', webSocketOptions: { autoPong: false } });
  // answers no ping either, but talks all along: its audio shows it is there (as when its pongs
  // wait behind its audio while the bridge is behind)
  const talker = createNodeTerminal({ url: b.url, number: '1004', password: 'pw', webSocketOptions: { autoPong: false } });
  let talking: NodeJS.Timeout | null = null;
  try {
    for (const t of [alive, mute, talker]) {
      await t.connect();
      await t.register();
    }
    const a = await alive.call('700', { codecs: ['PCMU/8000'] });
    const m = await mute.call('700', { codecs: ['PCMU/8000'] });
    const k = await talker.call('700', { codecs: ['PCMU/8000'] });
    await Promise.all([a.answered(), m.answered(), k.answered()]);
    const dropped: string[] = [];
    const aliveDropped: string[] = [];
    const talkerDropped: string[] = [];
    m.on('mediaDropped', (kind) => dropped.push(kind));
    a.on('mediaDropped', (kind) => aliveDropped.push(kind));
    k.on('mediaDropped', (kind) => talkerDropped.push(kind));
    const pumpedDeadline = Date.now() + 3000;
    while (b.server.pumpedCalls !== 3 && Date.now() < pumpedDeadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.server.pumpedCalls, 3);
    talking = setInterval(() => k.sendAudio(Buffer.alloc(160, 7)), 20);
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(dropped.includes('audio'), "the pumped audio of the terminal that does not pong was cut off (the SDK then binds it again)");
    assert.deepEqual(aliveDropped, [], 'the answering terminal kept its audio');
    assert.deepEqual(talkerDropped, [], 'the terminal that sends audio kept its audio, though it answered no ping');
    const back: number[] = [];
    a.on('audio', (p) => back.push(p.length));
    a.sendAudio(Buffer.alloc(160, 9));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(back, [160], 'and its audio still flows');
    assert.match(await b.server.metrics.registry.metrics(), /confmux_refusals_total\{code="HEARTBEAT_TIMEOUT"\} [1-9]/);
  } finally {
    if (talking) clearInterval(talking);
    alive.close();
    mute.close();
    talker.close();
    await b.close();
  }
});

test('bridge: on the JavaScript path too, a connection that sends stays while one that neither answers pings nor sends is cut off', async () => {
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const b = await bridgeOnEcho({ heartbeatIntervalMs: 200 });
  // control connections (always on the JavaScript path), neither answering pings
  const silent = createNodeTerminal({ url: b.url, number: '1005', password: 'pw', webSocketOptions: { autoPong: false } });
  const chatty = createNodeTerminal({ url: b.url, number: '1006', password: 'pw', webSocketOptions: { autoPong: false } });
  let chatting: NodeJS.Timeout | null = null;
  try {
    for (const t of [silent, chatty]) {
      await t.connect();
      await t.register();
    }
    const closed = new Promise<string>((resolve) => silent.once('closed', (err) => resolve(err?.code ?? 'none')));
    let chattyClosed = false;
    chatty.once('closed', () => (chattyClosed = true));
    chatting = setInterval(() => void chatty.ping().catch(() => undefined), 100);
    // dropped without a close frame, as a dead connection is: the SDK sees it closed
    assert.equal(await closed, 'CONNECTION_CLOSED');
    assert.match(await b.server.metrics.registry.metrics(), /confmux_refusals_total\{code="HEARTBEAT_TIMEOUT"\} 1\n/);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(chattyClosed, false, 'the connection that sent its requests was kept');
    await chatty.ping();
  } finally {
    if (chatting) clearInterval(chatting);
    silent.close();
    chatty.close();
    await b.close();
  }
});

// ---------------------------------------------------------------------------------------------
// A WebSocket leg (Asterisk's chan_websocket): the bridge is the client, the media server the
// server; here a ws server of this test stands in for Asterisk's /media endpoint.

interface WsRig {
  terminal: RawTerminal;
  ws: WebSocket;
  legClient: WebSocket;
  /** the media server's end, raw bytes */
  server: RawTerminal;
  pumped: PumpedAudio;
  legMessages: string[];
  close(): void;
}

async function wsRig(options: Partial<PumpedAudioOptions> = {}): Promise<WsRig> {
  const { default: WebSocketClient } = await import('ws');
  // the "media server": a raw TCP peer that answers one WebSocket handshake, then speaks bytes
  const { createServer } = await import('node:net');
  const { createHash } = await import('node:crypto');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const serverSide = new Promise<TcpSocket>((resolve) => srv.once('connection', resolve));
  const legClient = new WebSocketClient(`ws://127.0.0.1:${(srv.address() as AddressInfo).port}/media/x`, 'media', { perMessageDeflate: false });
  const peer = await serverSide;
  srv.close();
  const head = await new Promise<string>((resolve) => {
    let got = '';
    const on = (d: Buffer): void => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        peer.off('data', on);
        resolve(got);
      }
    };
    peer.on('data', on);
  });
  const key = /Sec-WebSocket-Key: (.+)\r\n/i.exec(head)![1]!.trim();
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  peer.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: media\r\n\r\n`);
  await once(legClient, 'open');
  const server = RawTerminal.wrap(peer);
  const legMessages: string[] = [];
  legClient.on('message', (d: Buffer, binary: boolean) => legMessages.push(binary ? `bin:${d.toString('hex')}` : d.toString()));

  const accepted = once(wss, 'connection');
  const terminal = await RawTerminal.open(port);
  const [ws] = (await accepted) as [WebSocket];
  const pumped = pump.attach(ws, rawSocket(ws)!, { kind: 'websocket', ws: legClient, tcp: rawSocket(legClient)!, bytesPerSample: 2, maxPayload: 4096 }, { ...OPTIONS, codecId: 1, bytesPerSample: 2, ...options }, () => undefined);
  assert.ok(pumped, 'the pump took the terminal and the WebSocket leg');
  return {
    terminal,
    ws,
    legClient,
    server,
    pumped,
    legMessages,
    close() {
      pumped.release();
      terminal.socket.destroy();
      ws.terminate();
      legClient.terminate();
      peer.destroy();
    },
  };
}

/** unmasks a client frame (FIN binary, payload < 126) as the media server reads it */
function unmaskFrame(frame: Buffer): { b0: number; masked: boolean; payload: Buffer } {
  const n = frame[1]! & 0x7f;
  const mask = frame.subarray(2, 6);
  const payload = Buffer.from(frame.subarray(6, 6 + n));
  for (let i = 0; i < n; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
  return { b0: frame[0]!, masked: (frame[1]! & 0x80) !== 0, payload };
}

test('WebSocket leg: frames from the terminal reach the media server as masked binary frames of bare payload; its binary frames reach the terminal with the confmux header, golden bytes', async () => {
  const r = await wsRig();
  try {
    r.terminal.write(masked(2, hex('10 00 01 00 0001 00000000 01020304')));
    r.terminal.write(masked(2, hex('10 00 01 00 0002 00000002 0506')));
    const f1 = unmaskFrame(await r.server.take(10));
    const f2 = unmaskFrame(await r.server.take(8));
    assert.deepEqual([f1.b0, f1.masked, f1.payload.toString('hex')], [0x82, true, '01020304']);
    assert.deepEqual([f2.b0, f2.masked, f2.payload.toString('hex')], [0x82, true, '0506']);
    // the media server's frames (unmasked, from a server), two in one write
    r.server.write(hex('8204 aabbccdd 8202 eeff'));
    assert.equal((await r.terminal.take(16 + 14)).toString('hex'), hex('820e 10 00 01 01 0005 000003e8 aabbccdd 820c 10 00 01 00 0006 000003ea eeff').toString('hex'));
    assert.deepEqual(r.legMessages, [], 'nothing went through the leg\'s ws while pumped');
  } finally {
    r.close();
  }
});

test('WebSocket leg: one read bringing more than server.mediaPumpStaleMs (100 ms) of the media server\'s audio: the older frames are dropped and counted, seq and timestamp skip them, golden bytes', async () => {
  // L16/8000 both sides: 100 ms is 800 samples, the newest 5 frames of 160 (320 bytes); one write, so one read
  const frames = (from: number, to: number): Buffer => {
    const out: Buffer[] = [];
    for (let i = from; i <= to; i++) out.push(Buffer.concat([hex('82 7e 0140'), Buffer.alloc(320, i)]));
    return Buffer.concat(out);
  };
  // what the terminal gets for frame i: seq 5 + i - 1, timestamp 1000 + (i - 1) * 160, the marker on the first sent
  const expected = (i: number, marker: boolean): string =>
    `827e014a100001${marker ? '01' : '00'}${(5 + i - 1).toString(16).padStart(4, '0')}${(1000 + (i - 1) * 160).toString(16).padStart(8, '0')}${Buffer.alloc(320, i).toString('hex')}`;
  const r = await wsRig({ legSampleRate: 8000 });
  try {
    const before = native.stats()[PUMP_STAT.droppedStale]!;
    r.server.write(frames(1, 8));
    for (let i = 4; i <= 8; i++) assert.equal((await r.terminal.take(334)).toString('hex'), expected(i, i === 4), `frame ${i}`);
    assert.equal(native.stats()[PUMP_STAT.droppedStale]! - before, 3);
    // a frame on its own afterwards is not stale: it follows on
    r.server.write(frames(9, 9));
    assert.equal((await r.terminal.take(334)).toString('hex'), expected(9, false));
    assert.deepEqual(r.legMessages, []);
  } finally {
    r.close();
  }
  // without the leg's sample rate the pump cannot tell the media time: all 8 go through
  const all = await wsRig();
  try {
    all.server.write(frames(1, 8));
    for (let i = 1; i <= 8; i++) assert.equal((await all.terminal.take(334)).toString('hex'), expected(i, i === 1), `frame ${i}`);
  } finally {
    all.close();
  }
});

test("WebSocket leg: the media server's text message (MEDIA_XOFF) goes to the leg's ws, with what follows; the pump lets go", async () => {
  const r = await wsRig();
  try {
    const text = Buffer.from('MEDIA_XOFF');
    r.server.write(Buffer.concat([hex('8204 01020304'), Buffer.from([0x81, text.length]), text, hex('8202 0506')]));
    await r.terminal.take(16);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(native.attached(), 0, 'handed back');
    assert.deepEqual(r.legMessages, ['MEDIA_XOFF', 'bin:0506'], "the leg's ws read the text and the frame behind it");
  } finally {
    r.close();
  }
});

test('bridge: a call on a WebSocket leg goes back on the pump after MEDIA_XOFF and MEDIA_XON, and its audio still comes back in order', async () => {
  // a media server's end of chan_websocket: greets with MEDIA_START, echoes binary frames, and
  // sends the flow-control texts when the test asks
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'media' });
  await once(wss, 'listening');
  const legs: WebSocket[] = [];
  wss.on('connection', (ws) => {
    legs.push(ws);
    ws.send('MEDIA_START connection_id:test');
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) ws.send(data, { binary: true });
    });
  });
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  const b = await bridgeOnEcho({}, `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  const t = createNodeTerminal({ url: b.url, number: '1001', password: 'pw' });
  const pumped = async (n: number, what: string): Promise<void> => {
    const deadline = Date.now() + 3000;
    while (b.server.pumpedCalls !== n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.server.pumpedCalls, n, what);
  };
  try {
    await t.connect();
    await t.register();
    const call = await t.call('700', { codecs: ['PCMU/8000'] });
    await call.answered();
    await pumped(1, 'the call is on the pump');
    const back: number[] = [];
    call.on('audio', (p) => back.push(Buffer.from(p)[0]!));
    const say = async (from: number): Promise<void> => {
      for (let i = from; i < from + 5; i++) {
        call.sendAudio(Buffer.alloc(160, i));
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 100));
    };
    await say(1);
    legs[0]!.send('MEDIA_XOFF');
    await pumped(0, 'the text took the call off the pump');
    legs[0]!.send('MEDIA_XON');
    await pumped(1, 'back on the pump once the leg carries media again');
    await say(6);
    assert.deepEqual(back, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'every payload came back, in order, before and after');
    const metrics = await b.server.metrics.registry.metrics();
    assert.ok(counter(metrics, 'confmux_media_pump_handbacks_total') >= 1);
  } finally {
    t.close();
    await b.close();
    for (const ws of legs) ws.terminate();
    wss.close();
  }
});

test('bridge: 30 terminals calling, hanging up and calling again for 4 s: each hears only its own audio, and the pump holds nothing after', async () => {
  const { createNodeTerminal } = await import('../../bridge/sdk/node.ts');
  // every terminal connects from 127.0.0.1: lift the per-address connection rate
  const b = await bridgeOnEcho({ connectionsPerSecondPerIp: 10000, connectionBurstPerIp: 10000 });
  const terminals = Array.from({ length: 30 }, (_, i) => createNodeTerminal({ url: b.url, number: String(2000 + i), password: 'pw' }));
  let crossTalk = 0;
  let heard = 0;
  let maxPumped = 0;
  try {
    await Promise.all(
      terminals.map(async (t) => {
        await t.connect();
        await t.register();
      }),
    );
    const deadline = Date.now() + 4000;
    await Promise.all(
      terminals.map(async (t, i) => {
        const mine = (i % 250) + 1;
        // calls of random length; each payload filled with this terminal's own byte
        while (Date.now() < deadline) {
          const call = await t.call('700', { codecs: ['PCMU/8000'] });
          await call.answered();
          call.on('audio', (p) => {
            heard++;
            if (p.some((v) => v !== mine)) crossTalk++;
          });
          const frames = 5 + Math.floor(Math.random() * 20);
          for (let f = 0; f < frames; f++) {
            call.sendAudio(new Uint8Array(160).fill(mine));
            maxPumped = Math.max(maxPumped, b.server.pumpedCalls);
            await new Promise((r) => setTimeout(r, 20));
          }
          await call.hangup();
        }
      }),
    );
    assert.equal(crossTalk, 0, 'no terminal heard another terminal\'s audio');
    assert.ok(heard > 1000, `audio flowed (${heard} frames)`);
    assert.ok(maxPumped >= 20, `calls were on the pump (${maxPumped} at once)`);
    const settle = Date.now() + 2000;
    while (b.server.pumpedCalls !== 0 && Date.now() < settle) await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.server.pumpedCalls, 0, 'every ended call let go of the pump');
  } finally {
    for (const t of terminals) t.close();
    await b.close();
  }
});
