/**
 * The primary's side of `server.workers` > 1: it owns the one port and hands every connection, as
 * a raw socket with the bytes it has read, to one worker process (WorkerPool), which serves it as
 * if it had accepted it.
 *
 * Routing keeps a terminal on one worker: the router reads the HTTP request; a well-formed
 * WebSocket upgrade on server.path gets its 101 answer here, then the router reads the first
 * WebSocket message (the bind, a small JSON text frame) and routes by the terminal number in it
 * (a hash), so that a terminal's control connection, its media connections and a resume land on
 * the worker that holds its session and calls, and a second bind of a number replaces the first
 * on that same worker. Everything else (plain HTTP requests, malformed or refused upgrades, a
 * first message without a number, a bind timeout) goes to the workers in turn, whose code answers
 * or refuses it exactly as a single bridge process does. Nothing per media packet passes here:
 * once handed over, the socket belongs to the worker. Two exceptions: GET /metrics from a loopback
 * client is answered here with every worker's metrics aggregated (WorkerPool.metrics), so that a
 * scrape sees the whole bridge and not one worker's share; and GET /healthz, answered from every
 * worker's health (WorkerPool.health): 200 only when every worker answers with its media-server
 * link up. The per-address limits (connection rate and concurrency per IP, connections waiting to
 * bind) are counted here over all workers (PrimaryAdmission); a connection they refuse is handed to
 * a worker marked to be refused, so that the refusal is the one a single process sends.
 *
 * Plain mode only: the router must read the requests (config refuses workers > 1 with TLS).
 */
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Config } from '../config.ts';
import { LOOPBACK } from './metrics.ts';
import { healthStatusCode, type BridgeHealth } from './health.ts';
import { PrimaryAdmission } from './PrimaryAdmission.ts';
import { addressOf } from './WorkerPool.ts';
import type { ErrorCode } from '../errors.ts';

/** where the router hands a connection: a worker index, the socket, what was read from it */
export interface Handoff {
  /** 'http': replay `head` into the worker's HTTP server; 'ws': the 101 was sent, `head` holds the WebSocket bytes read */
  kind: 'http' | 'ws';
  head: Buffer;
  /** 'ws' only: the primary's per-address limits refuse this connection; the worker closes it with this code */
  refuse?: ErrorCode;
  /** routed by the terminal's number: only that worker may take it (WorkerPool.handOff waits for it) */
  pinned?: boolean;
}

/** Hands the socket to worker `worker` (or the next live one); returns the worker that took it, null: none (closed). */
export type HandoffSink = (worker: number, socket: Socket, handoff: Handoff) => number | null;

/** The whole bridge's /metrics (the workers' aggregated). */
export type MetricsSource = () => Promise<{ contentType: string; body: string }>;

/** The whole bridge's /healthz (every worker's, health.ts aggregateHealth). */
export type HealthSource = () => Promise<BridgeHealth>;

/** What the router answers itself, for the whole bridge, instead of handing the request to one worker. */
export interface PrimaryAnswers {
  metrics?: MetricsSource;
  health?: HealthSource;
}

/**
 * Stops this process reading `socket` at all, not just delivering what it reads. `pause()` alone
 * leaves Node's handle reading into the stream's buffer until 16 kB wait there, and the primary
 * keeps its descriptor of a handed-off socket until the worker says it adopted it: a message the
 * terminal sent in that moment (its `register`, right after `bound`) was read here and lost, and
 * the terminal waited for an answer that never came (1 bench run with two workers in 3 to 30
 * under CPU load).
 * Called once the buffer is drained (`read()` starts the handle reading again).
 */
function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?(): number } | null })._handle;
  if (!handle || typeof handle.readStop !== 'function') return;
  handle.reading = false;
  handle.readStop();
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_HEAD = 16384;

/** FNV-1a of the terminal number, modulo the worker count: a number always lands on one worker */
export function workerForNumber(number: string, workers: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < number.length; i++) {
    h ^= number.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % workers;
}

export class UpgradeRouter {
  private readonly config: Readonly<Config>;
  private readonly workers: number;
  private readonly sink: HandoffSink;
  private readonly answers: PrimaryAnswers;
  /** the per-address limits over all workers */
  private readonly admission: PrimaryAdmission;
  private readonly server: Server;
  private readonly pending = new Set<Socket>();
  private next = 0;
  private closed = false;

  constructor(config: Readonly<Config>, workers: number, sink: HandoffSink, answers: PrimaryAnswers = {}) {
    this.config = config;
    this.workers = workers;
    this.sink = sink;
    this.answers = answers;
    this.admission = new PrimaryAdmission(config.limits);
    this.server = createServer({ noDelay: true }, (socket) => this.onSocket(socket));
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = this.config.server;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting; connections not yet handed over are closed. Idempotent. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    this.admission.close();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Worker `worker` says a WebSocket from `ip` that was handed to it closed (WorkerLink). */
  connectionClosed(worker: number, ip: string): void {
    this.admission.closed(worker, ip);
  }

  /** Worker `worker` exited: the connections it held are gone. */
  workerGone(worker: number): void {
    this.admission.workerGone(worker);
  }

  /** A worker saw a failed login from `ip`: until when the address is locked out, over all workers (0: not). */
  loginFailed(ip: string): number {
    return this.admission.loginFailed(ip);
  }

  private roundRobin(): number {
    const k = this.next;
    this.next = (this.next + 1) % this.workers;
    return k;
  }

  private onSocket(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.pending.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    let upgraded = false;
    let done = false;
    // the address, once its WebSocket is admitted and counted here
    let counted: string | null = null;
    const finish = (worker: number, kind: 'http' | 'ws', refuse?: ErrorCode, pinned = false): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.pause();
      // whatever the stream already holds goes with the socket
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) buf = Buffer.concat([buf, c]);
      stopReading(socket);
      this.pending.delete(socket);
      const took = this.sink(worker, socket, refuse === undefined ? { kind, head: buf, pinned } : { kind, head: buf, refuse });
      if (counted === null) return;
      if (took === null) this.admission.abandoned(counted);
      else this.admission.handedTo(took, counted);
    };
    // the client went, or broke, before it was routed
    const gone = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.pending.delete(socket);
      if (counted !== null) this.admission.abandoned(counted);
    };
    const onError = (): void => {
      gone();
      socket.destroy();
    };
    const onClose = gone;
    // no complete request in time: the worker's HTTP server applies its own timeouts and answers
    let timer = setTimeout(() => finish(this.roundRobin(), 'http'), this.config.limits.handshakeTimeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > MAX_HEAD) finish(this.roundRobin(), 'http');
          return;
        }
        const head = buf.subarray(0, end).toString('latin1');
        const own = end + 4 === buf.length ? this.ownAnswer(head, socket) : null;
        if (own !== null) {
          done = true;
          clearTimeout(timer);
          this.pending.delete(socket);
          socket.removeListener('data', onData);
          void this.answer(socket, own);
          return;
        }
        const ok = end + 4 === buf.length ? this.acceptable(head) : null;
        if (ok === null) return finish(this.roundRobin(), 'http');
        const accept = createHash('sha1').update(ok.key + GUID).digest('base64');
        const protocol = ok.protocol ? `Sec-WebSocket-Protocol: ${ok.protocol}\r\n` : '';
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${protocol}\r\n`);
        upgraded = true;
        buf = Buffer.alloc(0);
        // the per-address limits, over all workers: a refusal is sent by a worker, as it would be
        // without workers (the same close code, message and counter)
        const ip = addressOf(socket);
        const refused = this.admission.admit(ip);
        if (refused !== null) return finish(this.roundRobin(), 'ws', refused);
        counted = ip;
        clearTimeout(timer);
        // no bind in time: a worker's own bind timer closes it (BIND_TIMEOUT)
        timer = setTimeout(() => finish(this.roundRobin(), 'ws'), this.config.limits.bindTimeoutMs);
        return;
      }
      const number = this.bindNumber(buf);
      if (number === undefined) return; // more bytes needed
      if (number === null) finish(this.roundRobin(), 'ws');
      else finish(workerForNumber(number, this.workers), 'ws', undefined, true);
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  }

  /**
   * A request the router answers itself for the whole bridge: GET /healthz (any client), and GET
   * /metrics from a loopback client with metrics on (any query); null: a worker answers it.
   */
  private ownAnswer(head: string, socket: Socket): 'metrics' | 'health' | null {
    const m = /^GET (\S+) HTTP\/1\.[01]$/.exec(head.split('\r\n', 1)[0]!);
    const path = m?.[1]!.split('?')[0];
    if (path === '/healthz' && this.answers.health) return 'health';
    if (path === '/metrics' && this.answers.metrics && this.config.metrics.enabled && LOOPBACK.test(socket.remoteAddress ?? '')) return 'metrics';
    return null;
  }

  private async answer(socket: Socket, what: 'metrics' | 'health'): Promise<void> {
    let status = '200 OK';
    let contentType = 'text/plain; charset=utf-8';
    let body: string;
    try {
      if (what === 'health') {
        const health = await this.answers.health!();
        status = healthStatusCode(health) === 200 ? '200 OK' : '503 Service Unavailable';
        contentType = 'application/json';
        body = JSON.stringify(health);
      } else {
        const m = await this.answers.metrics!();
        contentType = m.contentType;
        body = m.body;
      }
    } catch (err) {
      status = what === 'health' ? '503 Service Unavailable' : '500 Internal Server Error';
      body = `${what} unavailable: ${(err as Error).message}\n`;
    }
    const payload = Buffer.from(body, 'utf8');
    socket.end(`HTTP/1.1 ${status}\r\nContent-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`);
  }

  /**
   * The Sec-WebSocket-Key of an upgrade this router may answer itself (GET server.path, version
   * 13, a valid key, an allowed Origin), or null: then a worker answers (or refuses) it.
   */
  private acceptable(head: string): { key: string; protocol: string } | null {
    const lines = head.split('\r\n');
    const m = /^GET (\S+) HTTP\/1\.1$/.exec(lines[0] ?? '');
    if (!m || m[1]!.split('?')[0] !== this.config.server.path) return null;
    const h = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const c = lines[i]!.indexOf(':');
      if (c <= 0) return null;
      const name = lines[i]!.slice(0, c).trim().toLowerCase();
      if (h.has(name)) return null;
      h.set(name, lines[i]!.slice(c + 1).trim());
    }
    if (h.get('upgrade')?.toLowerCase() !== 'websocket') return null;
    if (!(h.get('connection') ?? '').toLowerCase().split(',').some((t) => t.trim() === 'upgrade')) return null;
    if (h.get('sec-websocket-version') !== '13') return null;
    // extensions offered (permessage-deflate) are declined by not answering them, as the workers'
    // ws server (perMessageDeflate off) does; of subprotocols asked for, the first is taken, as ws does
    let protocol = '';
    const asked = h.get('sec-websocket-protocol');
    if (asked !== undefined) {
      protocol = asked.split(',')[0]!.trim();
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(protocol)) return null;
    }
    const key = h.get('sec-websocket-key') ?? '';
    if (!/^[+/0-9A-Za-z]{22}==$/.test(key)) return null;
    const origin = h.get('origin');
    if (origin !== undefined && !this.config.server.allowedOrigins.includes(origin)) {
      try {
        if (new URL(origin).host !== h.get('host')) return null;
      } catch {
        return null;
      }
    }
    return { key, protocol };
  }

  /**
   * The terminal number of the first WebSocket message when it is a bind: a string, null when the
   * message is not one (a worker refuses it), undefined while more bytes are needed.
   */
  private bindNumber(buf: Buffer): string | null | undefined {
    if (buf.length < 2) return undefined;
    const b0 = buf[0]!;
    const b1 = buf[1]!;
    if (b0 !== 0x81 || (b1 & 0x80) === 0) return null; // final text frame, masked
    let n = b1 & 0x7f;
    let at = 2;
    if (n === 127) return null;
    if (n === 126) {
      if (buf.length < 4) return undefined;
      n = buf.readUInt16BE(2);
      at = 4;
    }
    if (n > this.config.limits.maxControlMessageBytes) return null;
    if (buf.length < at + 4 + n) return undefined;
    const text = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) text[i] = buf[at + 4 + i]! ^ buf[at + (i & 3)]!;
    try {
      const msg = JSON.parse(text.toString('utf8')) as { type?: unknown; number?: unknown };
      return msg !== null && typeof msg === 'object' && msg.type === 'bind' && typeof msg.number === 'string' ? msg.number : null;
    } catch {
      return null;
    }
  }
}
