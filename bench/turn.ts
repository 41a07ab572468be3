/**
 * The same load through coturn, for `npm run bench -- --coturn`: coturn (Debian package `coturn`)
 * on 127.0.0.1 with TURN over TCP, its relay peer a UDP echo (coturn's own `turnutils_peer`, C).
 * Each stream is one TCP connection that allocates a UDP relay with long-term credentials
 * (RFC 8656: Allocate, 401 with realm and nonce, Allocate with MESSAGE-INTEGRITY), creates a
 * permission for the peer, binds a channel to it, then sends ChannelData every 20 ms with the same
 * payload size as the confmux run (the send time inside). The peer echoes every datagram; coturn
 * relays it back over the TCP connection. Loopback only, bounded in streams and time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, rssBytes } from './proc.ts';
import type { StepResult } from './run.ts';
import { RELAY_CPUS, cpusOf, loadCpus, onCpus, pinSelf } from './cpus.ts';
import { FrameTally } from './FrameTally.ts';
import { chooseLoadGenerator, DEFAULT_LOAD_POLL_US, type LoadCounts, type LoadGeneratorChoice, type NativeLoadGen } from './NativeLoadGen.ts';

const MAGIC = 0x2112a442;
const USER = 'bench';
const PASS = 'bench-turn-password';
const REALM = 'confmux.bench';
const FRAME_MS = 20;

// STUN / TURN message types and attributes (RFC 8489, RFC 8656)
const ALLOCATE = 0x0003;
const CREATE_PERMISSION = 0x0008;
const CHANNEL_BIND = 0x0009;
const SUCCESS = 0x0100;
const ERROR = 0x0110;
const A_USERNAME = 0x0006;
const A_MESSAGE_INTEGRITY = 0x0008;
const A_ERROR_CODE = 0x0009;
const A_CHANNEL_NUMBER = 0x000c;
const A_LIFETIME = 0x000d;
const A_XOR_PEER_ADDRESS = 0x0012;
const A_REALM = 0x0014;
const A_NONCE = 0x0015;
const A_REQUESTED_TRANSPORT = 0x0019;

interface Attr {
  type: number;
  value: Buffer;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Encodes a STUN request; with `key`, MESSAGE-INTEGRITY (HMAC-SHA1) is appended last. */
export function stunMessage(type: number, attrs: Attr[], key?: Buffer, txid = randomBytes(12)): Buffer {
  const body = Buffer.concat(
    attrs.map((a) => {
      const b = Buffer.alloc(4 + pad4(a.value.length));
      b.writeUInt16BE(a.type, 0);
      b.writeUInt16BE(a.value.length, 2);
      a.value.copy(b, 4);
      return b;
    }),
  );
  const head = Buffer.alloc(20);
  head.writeUInt16BE(type, 0);
  head.writeUInt32BE(MAGIC, 4);
  txid.copy(head, 8);
  if (!key) {
    head.writeUInt16BE(body.length, 2);
    return Buffer.concat([head, body]);
  }
  // the length covers the MESSAGE-INTEGRITY attribute (24 bytes) when the HMAC is computed
  head.writeUInt16BE(body.length + 24, 2);
  const hmac = createHmac('sha1', key).update(head).update(body).digest();
  const mi = Buffer.alloc(24);
  mi.writeUInt16BE(A_MESSAGE_INTEGRITY, 0);
  mi.writeUInt16BE(20, 2);
  hmac.copy(mi, 4);
  return Buffer.concat([head, body, mi]);
}

export function parseStun(msg: Buffer): { type: number; attrs: Map<number, Buffer> } {
  const type = msg.readUInt16BE(0);
  const len = msg.readUInt16BE(2);
  const attrs = new Map<number, Buffer>();
  for (let off = 20; off + 4 <= 20 + len; ) {
    const t = msg.readUInt16BE(off);
    const l = msg.readUInt16BE(off + 2);
    attrs.set(t, msg.subarray(off + 4, off + 4 + l));
    off += 4 + pad4(l);
  }
  return { type, attrs };
}

/** XOR-PEER-ADDRESS of an IPv4 address and port */
export function xorAddress(ip: string, port: number): Buffer {
  const b = Buffer.alloc(8);
  b[1] = 0x01;
  b.writeUInt16BE(port ^ (MAGIC >>> 16), 2);
  const a = ip.split('.').map(Number);
  b.writeUInt32BE((((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) ^ MAGIC) >>> 0, 4);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** coturn's UDP echo (turnutils_peer) on 127.0.0.1, for `--udp-echo`: the bridge's echo stand-in relays through it. */
export async function startUdpPeer(cpus: string | null = null): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const peer = spawn(...onCpus(cpus, '/usr/bin/turnutils_peer', ['-L', '127.0.0.1', '-p', String(port)]), { stdio: 'ignore' });
  await sleep(300);
  if (peer.exitCode !== null) throw new Error('turnutils_peer did not start');
  return { port, pid: peer.pid!, stop: () => stop(peer) };
}

/** One TURN-over-TCP client with one channel to the peer. */
class TurnLane {
  sock!: Socket;
  received = 0;
  frame = 0;
  closing = false;
  private buf: Buffer = Buffer.alloc(0);
  private pending: ((msg: Buffer) => void) | null = null;
  constructor(
    readonly index: number,
    private readonly load: TurnLoad,
  ) {}

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    const b = this.buf;
    while (b.length - off >= 4) {
      const first = b[off]!;
      if (first >= 0x40 && first <= 0x7f) {
        // ChannelData: channel number, length, data padded to 4 bytes over TCP
        const len = b.readUInt16BE(off + 2);
        const total = 4 + pad4(len);
        if (b.length - off < total) break;
        this.load.onFrame(this, b, off + 4, len);
        off += total;
      } else {
        if (b.length - off < 20) break;
        const total = 20 + b.readUInt16BE(off + 2);
        if (b.length - off < total) break;
        const msg = Buffer.from(b.subarray(off, off + total));
        off += total;
        const p = this.pending;
        this.pending = null;
        p?.(msg);
      }
    }
    this.buf = off === b.length ? Buffer.alloc(0) : b.subarray(off);
  }

  private request(msg: Buffer): Promise<{ type: number; attrs: Map<number, Buffer> }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`TURN lane ${this.index}: no answer`)), 10000);
      this.pending = (m) => {
        clearTimeout(timer);
        resolve(parseStun(m));
      };
      this.sock.write(msg);
    });
  }

  /** Allocate (long-term credentials), CreatePermission and ChannelBind for the peer */
  async open(port: number, peerPort: number): Promise<void> {
    this.sock = connect({ host: '127.0.0.1', port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('data', (c: Buffer) => this.onData(c));
    this.sock.on('error', () => undefined);
    this.sock.on('close', () => {
      if (!this.closing) this.load.unexpectedCloses++;
    });
    const transport = { type: A_REQUESTED_TRANSPORT, value: Buffer.from([17, 0, 0, 0]) };
    const first = await this.request(stunMessage(ALLOCATE, [transport]));
    if (first.type !== (ALLOCATE | ERROR)) throw new Error(`TURN lane ${this.index}: expected 401 to the first Allocate, got 0x${first.type.toString(16)}`);
    const realm = first.attrs.get(A_REALM)!;
    const nonce = first.attrs.get(A_NONCE)!;
    const key = createHash('md5').update(`${USER}:${realm.toString()}:${PASS}`).digest();
    const auth = (): Attr[] => [
      { type: A_USERNAME, value: Buffer.from(USER) },
      { type: A_REALM, value: realm },
      { type: A_NONCE, value: nonce },
    ];
    const check = (r: { type: number; attrs: Map<number, Buffer> }, req: number, what: string): void => {
      if (r.type !== (req | SUCCESS)) {
        const e = r.attrs.get(A_ERROR_CODE);
        const code = e ? e[2]! * 100 + e[3]! : 0;
        throw new Error(`TURN lane ${this.index}: ${what} failed (${code} ${e ? e.subarray(4).toString() : ''})`);
      }
    };
    check(await this.request(stunMessage(ALLOCATE, [transport, { type: A_LIFETIME, value: u32(600) }, ...auth()], key)), ALLOCATE, 'Allocate');
    const peer = { type: A_XOR_PEER_ADDRESS, value: xorAddress('127.0.0.1', peerPort) };
    check(await this.request(stunMessage(CREATE_PERMISSION, [peer, ...auth()], key)), CREATE_PERMISSION, 'CreatePermission');
    check(await this.request(stunMessage(CHANNEL_BIND, [{ type: A_CHANNEL_NUMBER, value: u32(0x4000 << 16) }, peer, ...auth()], key)), CHANNEL_BIND, 'ChannelBind');
  }
}

class TurnLoad {
  readonly lanes: TurnLane[] = [];
  /** the JavaScript generator's counts */
  private readonly tally = new FrameTally();
  unexpectedCloses = 0;
  /** the C++ thread that sends ChannelData and times it once a lane's channel is bound (else this event loop) */
  readonly native: NativeLoadGen | null;
  constructor(
    readonly dataBytes: number,
    native: NativeLoadGen | null,
  ) {
    this.native = native;
  }

  /** a lane whose channel is bound: from now on the native thread (if any) reads and writes its socket */
  ready(lane: TurnLane): void {
    if (this.native && !this.native.add(lane.sock, lane.index)) throw new Error(`TURN lane ${lane.index}: the native load generator cannot take its socket (use --load-generator javascript)`);
  }

  counts(): LoadCounts {
    return this.native ? this.native.counts(this.unexpectedCloses) : this.tally.counts(this.unexpectedCloses);
  }

  onFrame(lane: TurnLane, b: Buffer, off: number, len: number): void {
    lane.received++;
    this.tally.received(len < 8 ? null : b.readDoubleLE(off));
  }

  private send(lane: TurnLane): void {
    if (lane.sock.destroyed) return;
    const now = performance.now();
    const n = this.dataBytes;
    const buf = Buffer.allocUnsafe(4 + pad4(n));
    buf.writeUInt16BE(0x4000, 0);
    buf.writeUInt16BE(n, 2);
    buf.fill(0xff, 4);
    buf.writeDoubleLE(now, 4);
    buf.writeUInt32LE(lane.index, 12);
    buf.writeUInt32LE(lane.frame++, 16);
    this.tally.sent(now);
    lane.sock.write(buf);
  }

  /** as Load.pace in bench/run.ts: every lane every 20 ms for `ms`; the window starts after `windowDelayMs` and lasts `windowMs` */
  pace(ms: number, windowDelayMs: number, windowMs: number): Promise<void> {
    if (this.native) return this.native.pace(ms, windowDelayMs, windowMs);
    this.tally.window(windowDelayMs, windowMs);
    const lanes = this.lanes;
    const n = lanes.length;
    const t0 = performance.now();
    const total = Math.floor((ms / FRAME_MS) * n);
    let k = 0;
    return new Promise<void>((resolve) => {
      const tick = (): void => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / FRAME_MS) * n));
        while (k < due) {
          this.send(lanes[k % n]!);
          k++;
        }
        if (k >= total) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
  }
}

export interface CoturnOptions {
  streams: number;
  seconds: number;
  warmupSeconds: number;
  /** bytes each datagram to the peer carries: the confmux run's whole frame size */
  dataBytes: number;
  log: (line: string) => void;
  /** coturn on CPU 0, the load and the echo peer on the others (bench/cpus.ts) */
  pin?: boolean;
  /** as the confmux run's (bench/run.ts): the native generator sends ChannelData */
  loadGenerator?: LoadGeneratorChoice;
  /** as the bench's: the native generator's polling interval, µs (0: woken by each frame) [100] */
  loadPollUs?: number;
}

export function coturnAvailable(): boolean {
  return existsSync('/usr/bin/turnserver') && existsSync('/usr/bin/turnutils_peer');
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the load through coturn; the result has the confmux step's shape (CPU and RSS are coturn's). */
export async function runCoturn(o: CoturnOptions): Promise<StepResult> {
  if (!coturnAvailable()) throw new Error('coturn is not installed (apt-get install coturn)');
  const dir = mkdtempSync(join(tmpdir(), 'confmux-coturn-'));
  const port = await freePort();
  const peerPort = await freePort();
  const peer = spawn(...onCpus(o.pin ? loadCpus() : null, '/usr/bin/turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)]), { stdio: 'ignore' });
  // prettier-ignore
  const turn = spawn(...onCpus(o.pin ? RELAY_CPUS : null, '/usr/bin/turnserver', [
    '-n', '--listening-ip', '127.0.0.1', '--listening-port', String(port), '--relay-ip', '127.0.0.1',
    '--no-tls', '--no-dtls', '--lt-cred-mech', '--user', `${USER}:${PASS}`, '--realm', REALM,
    '--allow-loopback-peers', '--no-cli', '--no-multicast-peers', '--min-port', '40000', '--max-port', '49999',
    '--pidfile', join(dir, 'turnserver.pid'), '--log-file', join(dir, 'turn.log'), '--no-stdout-log', '--simple-log',
    '--total-quota', '0', '--user-quota', '0', '--max-bps', '0', '--stale-nonce', '0',
  ]), { stdio: 'ignore' });
  // --pin: the load generator (this process) on the load's CPUs while coturn runs
  const unpin = o.pin ? pinSelf(loadCpus() ?? cpusOf('self')) : (): void => undefined;
  let native: NativeLoadGen | null;
  try {
    native = chooseLoadGenerator(o.loadGenerator ?? 'auto', o.dataBytes, 'turn', o.log, o.loadPollUs ?? DEFAULT_LOAD_POLL_US);
  } catch (err) {
    unpin();
    await Promise.all([stop(turn), stop(peer)]);
    throw err;
  }
  const load = new TurnLoad(o.dataBytes, native);
  const loadDelay = monitorEventLoopDelay({ resolution: 1 });
  loadDelay.enable();
  try {
    // wait for coturn to listen
    const up = performance.now() + 10000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port }, () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) break;
      if (performance.now() > up || turn.exitCode !== null) throw new Error('coturn did not start (see its log)');
      await sleep(100);
    }
    const baseline = rssBytes(turn.pid!);
    const t = performance.now();
    for (let i = 0; i < o.streams; i++) load.lanes.push(new TurnLane(i, load));
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(64, o.streams) }, async () => {
        while (next < load.lanes.length) {
          const lane = load.lanes[next++]!;
          await lane.open(port, peerPort);
          load.ready(lane);
        }
      }),
    );
    o.log(`coturn: ${o.streams} TURN allocations with a channel to the echo peer (${((performance.now() - t) / 1000).toFixed(1)} s)`);
    const before = load.counts();
    let cpu0 = 0;
    let cpu1 = 0;
    let l0 = process.cpuUsage();
    let l1 = l0;
    let rss = 0;
    // when each sample was actually taken: the CPU figures are over that time (as the bridge's in
    // bench/run.ts), not over the nominal window, which a late timer would stretch
    const windowStart = performance.now() + o.warmupSeconds * 1000;
    let sampledFrom = windowStart;
    let sampledTo = 0;
    const s0 = setTimeout(() => {
      sampledFrom = performance.now();
      cpu0 = cpuSeconds(turn.pid!);
      l0 = process.cpuUsage();
      loadDelay.reset();
    }, o.warmupSeconds * 1000);
    const s1 = setTimeout(() => {
      sampledTo = performance.now();
      cpu1 = cpuSeconds(turn.pid!);
      l1 = process.cpuUsage(l0);
      rss = rssBytes(turn.pid!);
    }, (o.warmupSeconds + o.seconds) * 1000);
    await load.pace((o.warmupSeconds + o.seconds) * 1000 + 5, o.warmupSeconds * 1000, o.seconds * 1000);
    clearTimeout(s0);
    clearTimeout(s1);
    if (cpu1 === 0) {
      sampledTo = performance.now();
      cpu1 = cpuSeconds(turn.pid!);
      l1 = process.cpuUsage(l0);
      rss = rssBytes(turn.pid!);
    }
    const sampledS = Math.max(0.001, (sampledTo - sampledFrom) / 1000);
    const timersLateMs = Math.max(sampledFrom - windowStart, sampledTo - (windowStart + o.seconds * 1000));
    const grace = performance.now() + 1000;
    const backIn = (c: LoadCounts): boolean => c.received - before.received >= c.sent - before.sent;
    while (!backIn(load.counts()) && performance.now() < grace) await sleep(20);
    const c = load.counts();
    const messages = c.sentInWindow + c.receivedInWindow;
    return {
      streams: o.streams,
      seconds: o.seconds,
      sentPerSecond: c.sentInWindow / o.seconds,
      receivedPerSecond: c.receivedInWindow / o.seconds,
      sent: c.sent - before.sent,
      received: c.received - before.received,
      lost: Math.max(0, c.sent - before.sent - (c.received - before.received)),
      bridgeDropped: null,
      rttMs: c.rtt,
      bridgeCpu: (cpu1 - cpu0) / sampledS,
      loadCpu: (l1.user + l1.system) / 1e6 / sampledS,
      // the CPU fraction over the nominal window's message rate (the load generator counts by its own clock)
      cpuMicrosPerMessage: messages ? ((cpu1 - cpu0) / sampledS / (messages / o.seconds)) * 1e6 : NaN,
      timersLateMs,
      bridgeRssBytes: rss,
      rssPerTerminalBytes: (rss - baseline) / o.streams,
      unexpectedCloses: c.unexpectedCloses,
      bridgeLoop: null,
      loadLoopDelayMs: { p50: loadDelay.percentile(50) / 1e6, p99: loadDelay.percentile(99) / 1e6, max: loadDelay.max / 1e6 },
      held: false,
    };
  } finally {
    unpin();
    load.native?.close();
    for (const lane of load.lanes) {
      lane.closing = true;
      lane.sock?.destroy();
    }
    loadDelay.disable();
    await Promise.all([stop(turn), stop(peer)]);
    rmSync(dir, { recursive: true, force: true });
  }
}
