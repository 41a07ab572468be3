/**
 * The one port: an HTTP server carrying terminal WebSockets, GET /healthz and (to loopback
 * clients) GET /metrics. Every connection must bind with its first message within the bind
 * timeout: a control connection with the terminal's password, a media connection with a token
 * issued on that terminal's control connection for that call and kind.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as HttpsServer } from 'node:https';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { ConfmuxError, closeReason, type ErrorCode } from '../errors.ts';
import { PROTOCOL_VERSION, parseBind, type BindMessage, type ServerMessage } from '../protocol/messages.ts';
import type { IncomingCall, MediaServerDriver, Presence } from '../../plugin/driver.ts';
import { MediaTokens } from './MediaTokens.ts';
import { LOOPBACK, Metrics } from './metrics.ts';
import { Terminal, type TerminalDeps } from './Terminal.ts';
import { MediaPump } from './MediaPump.ts';
import { VideoRooms } from './VideoRooms.ts';
import { WebAssets } from './WebAssets.ts';
import { Admission } from './Admission.ts';
import { safeEqual } from '../../plugin/credentials.ts';
import type { Handoff } from './UpgradeRouter.ts';
import { healthStatusCode, type Health } from './health.ts';
import { rawSocket } from './wsFrames.ts';

export interface BridgeServerOptions {
  /**
   * As a worker behind a primary (server.workers > 1): whether a terminal number is this worker's.
   * Presence left by an earlier bridge is cleared only for this worker's numbers.
   */
  owns?: (number: string) => boolean;
}

/** A connection as the heartbeat tracks it. */
export interface Tracked extends WebSocket {
  /** a pong came since the last ping */
  confmuxAlive?: boolean;
  /** the socket's bytesRead at the last ping: more since then also shows the connection alive */
  confmuxBytesRead?: number;
  /** set while the native media pump holds the connection: pings through it, false when dead */
  confmuxHeartbeat?: () => boolean;
}


/**
 * Connection listeners that need nothing but the emitter (`this`): one function for every
 * connection instead of a closure (and the scope it keeps) per connection.
 */
function destroyOnError(this: Duplex): void {
  this.destroy();
}
function markAlive(this: Tracked): void {
  this.confmuxAlive = true;
}

export class BridgeServer {
  readonly metrics: Metrics;
  private readonly config: Readonly<Config>;
  private readonly driver: MediaServerDriver;
  private readonly log: Logger;
  private readonly http: Server | HttpsServer;
  private readonly admission: Admission;
  private addressFailures: ((ip: string) => void) | null = null;
  private readonly wss: WebSocketServer;
  private readonly tokens: MediaTokens;
  private readonly terminals = new Map<string, Terminal>();
  private readonly sockets = new Set<Tracked>();
  private heartbeat: NodeJS.Timeout | null = null;
  /** per number, the presence update in flight: updates run in order, each with the state of its time */
  private readonly presence = new Map<string, Promise<void>>();
  private readonly videoRooms = new VideoRooms();
  private readonly mediaPump: MediaPump | null;
  private readonly web = new WebAssets();
  private draining = false;
  private closed = false;
  private serving = false;
  private readonly owns: (number: string) => boolean;
  /** what every Terminal gets: one object shared by all of them */
  private readonly terminalDeps: TerminalDeps;

  constructor(config: Readonly<Config>, driver: MediaServerDriver, log: Logger, options: BridgeServerOptions = {}) {
    this.owns = options.owns ?? (() => true);
    this.config = config;
    this.driver = driver;
    this.log = log;
    this.tokens = new MediaTokens(config.limits.mediaTokenTtlMs);
    this.metrics = new Metrics({ terminals: () => this.terminals.size, calls: () => this.callCount() });
    this.admission = new Admission(config.limits);
    // the pump reads and writes the TCP socket itself: with TLS in the bridge, the JavaScript path
    this.mediaPump = config.server.tls ? null : MediaPump.forMode(config.server.mediaPump, log, config.server.mediaPumpPriority, { coalesceUs: config.server.mediaPumpCoalesceUs, staleMs: config.server.mediaPumpStaleMs });
    this.terminalDeps = {
      config: this.config,
      driver: this.driver,
      tokens: this.tokens,
      metrics: this.metrics,
      log: this.log,
      acceptingCalls: () => !this.draining,
      presenceChanged: (t) => this.publishPresence(t.number),
      videoRooms: this.videoRooms,
      mediaPump: this.mediaPump,
      closed: (t) => {
        if (this.terminals.get(t.number) === t) this.terminals.delete(t.number);
      },
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.onRequest(req, res);
    const tls = config.server.tls;
    this.http = tls ? createTlsServer({ ...this.readTls(), minVersion: 'TLSv1.2' }, handler) : createServer(handler);
    if (tls) {
      // certificates renew: re-read them when either file changes, without a restart
      const reload = (): void => {
        try {
          (this.http as HttpsServer).setSecureContext({ ...this.readTls(), minVersion: 'TLSv1.2' });
          this.log.info('TLS certificate reloaded');
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'TLS certificate not reloaded; keeping the previous one');
        }
      };
      for (const f of [tls.cert, tls.key]) watchFile(f, { interval: 2000, persistent: false }, reload);
    }
    this.http.headersTimeout = config.limits.handshakeTimeoutMs;
    this.http.requestTimeout = config.limits.handshakeTimeoutMs * 3;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: config.limits.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    driver.on('incoming', (invite) => this.onInvite(invite));
    driver.on('up', () => {
      this.broadcast({ type: 'pbx', state: 'up' });
      void this.republish();
    });
    driver.on('down', () => this.broadcast({ type: 'pbx', state: 'down' }));
  }

  /** The PBX invites a terminal: ring it if it is registered here and free, refuse otherwise. */
  private onInvite(invite: IncomingCall): void {
    const terminal = this.terminals.get(invite.to);
    if (!terminal || !terminal.registered || this.draining) {
      this.log.info({ terminal: invite.to }, 'invitation for a terminal that is not registered');
      void invite.reject('unavailable').catch(() => undefined);
      return;
    }
    if (terminal.calls.size >= this.config.limits.maxCallsPerTerminal) {
      void invite.reject('busy').catch(() => undefined);
      return;
    }
    terminal.offer(invite);
  }

  private broadcast(message: ServerMessage): void {
    for (const t of this.terminals.values()) t.send(message);
  }

  private presenceOf(number: string): Presence {
    const t = this.terminals.get(number);
    if (!t || !t.registered) return 'unavailable';
    return t.calls.size > 0 ? 'in_use' : 'available';
  }

  /** Brings the PBX's view of a terminal up to date (queued per number, latest state wins). */
  private publishPresence(number: string): void {
    if (!this.driver.isUp) return;
    const previous = this.presence.get(number) ?? Promise.resolve();
    const next = previous
      .then(() => this.driver.setPresence(number, this.presenceOf(number)))
      .catch((err: unknown) => this.log.warn({ terminal: number, err: (err as Error).message }, 'presence not published'));
    this.presence.set(number, next);
    void next.then(() => {
      if (this.presence.get(number) === next) this.presence.delete(number);
    });
  }

  /** The media server link is (back) up: publish every terminal registered here, clear stale ones. */
  private async republish(): Promise<void> {
    for (const t of this.terminals.values()) if (t.registered) this.publishPresence(t.number);
    if (!this.config.presence.clearStale) return;
    try {
      const stale = (await this.driver.listPresent()).filter((n) => this.owns(n) && !this.terminals.get(n)?.registered);
      for (const number of stale) this.publishPresence(number);
      if (stale.length) this.log.info({ terminals: stale }, 'cleared presence left by an earlier bridge');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read presence from the media server');
    }
  }

  private readTls(): { cert: Buffer; key: Buffer } {
    const tls = this.config.server.tls!;
    return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  }

  /** Browsers send Origin: allow the page's own origin and the configured ones. Others send none. */
  private originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (!origin) return true;
    if (this.config.server.allowedOrigins.includes(origin)) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }

  /**
   * As a worker: `sink` hears of every failed login's address (WorkerLink tells the primary, which
   * counts them over all workers).
   */
  reportAddressFailures(sink: (ip: string) => void): void {
    this.addressFailures = sink;
  }

  /** As a worker: the primary says `ip` is locked out until `until` (epoch ms), counted over all workers. */
  lockAddress(ip: string, until: number): void {
    this.admission.lockAddress(ip, until);
  }

  private loginFailed(number: string, ip: string): void {
    this.admission.loginFailed(number, ip);
    this.addressFailures?.(ip);
  }

  /** This process's /healthz answer (with workers, the primary sums every worker's: health.ts). */
  health(): Health {
    const pbx = this.driver.isUp ? 'up' : 'down';
    const status = this.draining ? 'draining' : pbx === 'up' ? 'ok' : 'degraded';
    return { status, mediaServer: this.driver.kind, pbx, terminals: this.terminals.size, calls: this.callCount() };
  }

  private callCount(): number {
    let n = 0;
    for (const t of this.terminals.values()) n += t.calls.size;
    return n;
  }

  /** the native media pump's relay thread scheduling (null: no pump) */
  get pumpPriority(): string | null {
    return this.mediaPump?.priority ?? null;
  }

  /** calls whose audio the native media pump relays now */
  get pumpedCalls(): number {
    return this.mediaPump?.size ?? 0;
  }

  get terminalCount(): number {
    return this.terminals.size;
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = this.config.server;
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.startServing();
    const address = this.http.address() as AddressInfo;
    this.log.info({ host: address.address, port: address.port, path: this.config.server.path }, 'listening');
    return address;
  }

  /** Heartbeats and presence; listen() does this, a worker (which does not listen) calls it. */
  startServing(): void {
    if (this.serving) return;
    this.serving = true;
    // the link may have come up before this server listened for it
    if (this.driver.isUp) void this.republish();
    this.heartbeat = setInterval(() => this.beat(), this.config.limits.heartbeatIntervalMs);
    this.heartbeat.unref();
  }

  /**
   * A connection the primary accepted and handed over (server.workers > 1), with the bytes it
   * read: an HTTP request to serve, or a WebSocket whose 101 the primary sent.
   */
  adopt(socket: Socket, handoff: Handoff): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (handoff.kind === 'http') {
      this.http.emit('connection', socket);
      if (handoff.head.length > 0) socket.emit('data', handoff.head);
      socket.resume();
      return;
    }
    socket.on('error', destroyOnError);
    // what ws's WebSocketServer does after its own handshake (ws: websocket-server.js completeUpgrade)
    const ws = new WebSocket(null as unknown as string, undefined, { autoPong: true } as WebSocket.ClientOptions) as Tracked & { setSocket(socket: Socket, head: Buffer, options: object): void };
    ws.setSocket(socket, handoff.head, { allowSynchronousEvents: true, maxPayload: this.config.limits.maxMessageBytes, skipUTF8Validation: false });
    if (this.draining) {
      this.metrics.refusals.inc({ code: 'SHUTTING_DOWN' });
      ws.close(1001, closeReason('SHUTTING_DOWN'));
      return;
    }
    if (handoff.refuse !== undefined) return this.refuseAdmission(ws, handoff.refuse, socket.remoteAddress);
    this.onConnection(ws, socket.remoteAddress);
  }

  get address(): AddressInfo {
    return this.http.address() as AddressInfo;
  }

  private beat(): void {
    for (const ws of this.sockets) {
      const viaPump = ws.confmuxHeartbeat;
      if (viaPump !== undefined) {
        if (!viaPump()) {
          this.metrics.refusals.inc({ code: 'HEARTBEAT_TIMEOUT' });
          ws.terminate();
        }
        continue;
      }
      // anything read from the connection since the last beat shows it is there, as a pong does
      // (the ping may wait behind the terminal's own data while the bridge is behind)
      const read = rawSocket(ws)?.bytesRead ?? 0;
      if (ws.confmuxAlive === false && read === ws.confmuxBytesRead) {
        this.metrics.refusals.inc({ code: 'HEARTBEAT_TIMEOUT' });
        ws.terminate();
        continue;
      }
      ws.confmuxBytesRead = read;
      ws.confmuxAlive = false;
      ws.ping();
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const health = this.health();
      res.writeHead(healthStatusCode(health), { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(health));
      return;
    }
    if (req.method === 'GET' && path === '/metrics' && this.config.metrics.enabled && LOOPBACK.test(req.socket.remoteAddress ?? '')) {
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(body);
      return;
    }
    if (req.method === 'GET' && this.config.web.enabled && path !== undefined && path.startsWith(this.config.server.path)) {
      const asset = await this.web.get(path.slice(this.config.server.path.length - 1)).catch((err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'web page could not be built');
        return undefined;
      });
      if (asset) {
        res.writeHead(200, {
          'content-type': asset.type,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
        });
        res.end(asset.body);
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '/').split('?')[0];
    // no closure here outlives the handshake: one kept for the connection's life would keep the
    // whole request (headers, parser state) with it
    socket.on('error', destroyOnError);
    if (path !== this.config.server.path) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (this.draining) {
      this.metrics.refusals.inc({ code: 'SHUTTING_DOWN' });
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (!this.originAllowed(req)) {
      this.metrics.refusals.inc({ code: 'ORIGIN_REFUSED' });
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const remote = req.socket.remoteAddress;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws as Tracked, remote));
  }

  private refuse(ws: WebSocket, code: ErrorCode, message?: string, remote?: string): void {
    this.metrics.refusals.inc({ code });
    this.log.info({ code, remote, reason: message }, 'connection refused');
    ws.close(new ConfmuxError(code, message).closeCode, closeReason(code, message));
    // a socket paused while its bind was checked must read again to see the peer's close reply
    if (ws.isPaused) ws.resume();
    const kill = setTimeout(() => ws.terminate(), 2000);
    kill.unref();
    ws.once('close', () => clearTimeout(kill));
  }

  /** A connection the per-address limits refuse (this process's, or the primary's with workers). */
  private refuseAdmission(ws: WebSocket, code: ErrorCode, remote: string | undefined): void {
    const why = code === 'RATE_LIMITED' ? `more than ${this.config.limits.connectionsPerSecondPerIp} new connections per second from this address` : undefined;
    this.refuse(ws, code, why, remote);
  }

  private onConnection(ws: Tracked, remote: string | undefined): void {
    const ip = remote ?? 'unknown';
    const refused = this.admission.admit(ip);
    if (refused) return this.refuseAdmission(ws, refused, remote);
    // Listeners here stay for the connection's life (but 'message', gone after the first): few,
    // and sharing one scope; 'close' comes once, so 'on' (no once-wrapper kept per connection)
    let unbound = true;
    let timer: NodeJS.Timeout | null = null;
    ws.confmuxAlive = true;
    this.sockets.add(ws);
    ws.on('close', () => {
      this.admission.release(ip, unbound);
      this.sockets.delete(ws);
      if (timer !== null) clearTimeout(timer);
      timer = null;
    });
    ws.on('pong', markAlive);
    ws.on('error', (err) => this.log.debug({ err: err.message, remote }, 'socket error'));
    timer = setTimeout(() => {
      timer = null;
      this.refuse(ws, 'BIND_TIMEOUT', `no bind message within ${this.config.limits.bindTimeoutMs} ms`, remote);
    }, this.config.limits.bindTimeoutMs);
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      unbound = false;
      this.admission.bound();
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (isBinary) return this.refuse(ws, 'BIND_REQUIRED', 'binary data before the bind message', remote);
      if (data.length > this.config.limits.maxControlMessageBytes) return this.refuse(ws, 'FRAME_TOO_LARGE', 'bind message too large', remote);
      let bind: BindMessage;
      try {
        bind = parseBind(data.toString());
      } catch (err) {
        if (err instanceof ConfmuxError) return this.refuse(ws, err.code, err.message, remote);
        throw err;
      }
      // nothing else is read until the bind is decided
      ws.pause();
      this.bind(ws, bind, remote).catch((err: unknown) => {
        this.log.error({ err: (err as Error).message, remote }, 'bind failed');
        this.refuse(ws, 'INTERNAL', 'bind failed', remote);
      });
    });
  }

  private async bind(ws: WebSocket, bind: BindMessage, remote: string | undefined): Promise<void> {
    if (bind.kind === 'control') {
      const ip = remote ?? 'unknown';
      const wait = this.admission.loginWait(bind.number, ip);
      if (wait > 0) return this.refuse(ws, 'LOGIN_THROTTLED', `too many failed logins: try again in ${Math.ceil(wait / 1000)} s`, remote);
      if (bind.resume !== undefined) return this.resume(ws, bind.number, bind.resume, ip, remote);
      if (!this.driver.isUp) return this.refuse(ws, 'PBX_UNAVAILABLE', 'cannot check credentials: the media server is not reachable', remote);
      const ok = await this.driver.verifyPassword(bind.number, bind.password ?? '');
      if (ws.readyState !== ws.OPEN) return;
      if (!ok) {
        this.loginFailed(bind.number, ip);
        return this.refuse(ws, 'AUTH_FAILED', undefined, remote);
      }
      this.admission.loginSucceeded(bind.number);
      if (this.draining) return this.refuse(ws, 'SHUTTING_DOWN', undefined, remote);
      const previous = this.terminals.get(bind.number);
      if (previous) {
        this.log.info({ terminal: bind.number }, 'new session replaces the old one');
        this.metrics.refusals.inc({ code: 'REPLACED' });
        void previous.close('REPLACED');
      }
      const terminal = new Terminal(bind.number, ws, this.terminalDeps);
      this.terminals.set(bind.number, terminal);
      this.metrics.connections.inc({ kind: 'control' });
      terminal.send({
        type: 'bound',
        v: PROTOCOL_VERSION,
        kind: 'control',
        number: bind.number,
        heartbeatMs: this.config.limits.heartbeatIntervalMs,
        resume: terminal.resumeToken,
        resumeWindowMs: this.config.limits.resumeWindowMs,
        limits: {
          maxControlMessageBytes: this.config.limits.maxControlMessageBytes,
          maxAudioFrameBytes: this.config.limits.maxAudioFrameBytes,
          maxCallsPerTerminal: this.config.limits.maxCallsPerTerminal,
        },
      });
      ws.resume();
      return;
    }
    // (every kind of v1 is served: audio, video, content)
    if (!this.tokens.consume(bind.token, bind.number, bind.callId, bind.kind)) return this.refuse(ws, 'TOKEN_INVALID', undefined, remote);
    const call = this.terminals.get(bind.number)?.calls.get(bind.callId);
    if (!call || call.isEnded) return this.refuse(ws, 'TOKEN_INVALID', 'the call has ended', remote);
    this.metrics.connections.inc({ kind: bind.kind });
    ws.send(JSON.stringify({ type: 'bound', v: PROTOCOL_VERSION, kind: bind.kind, number: bind.number }));
    // a content leg's call is video-only: its content connection carries that video
    if (bind.kind === 'audio') call.attachAudio(ws);
    else call.attachVideo(ws);
    ws.resume();
  }

  /** A terminal comes back after its control connection dropped: same session, same calls. */
  private resume(ws: WebSocket, number: string, token: string, ip: string, remote: string | undefined): void {
    const t = this.terminals.get(number);
    if (!t || !t.detached || !safeEqual(token, t.resumeToken)) {
      this.loginFailed(number, ip);
      return this.refuse(ws, 'RESUME_FAILED', undefined, remote);
    }
    t.resume(ws);
    this.metrics.connections.inc({ kind: 'control' });
    t.send({
      type: 'bound',
      v: PROTOCOL_VERSION,
      kind: 'control',
      number,
      heartbeatMs: this.config.limits.heartbeatIntervalMs,
      resume: t.resumeToken,
      resumeWindowMs: this.config.limits.resumeWindowMs,
      resumed: true,
      calls: t.callsForResume(),
    });
    ws.resume();
  }

  /** Stops taking terminals, lets calls finish up to the drain timeout, then ends the rest. */
  async drain(timeoutMs = this.config.shutdown.drainTimeoutMs): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + timeoutMs;
    while (this.callCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    await this.close();
  }

  /** Closes every terminal (ending its calls) and the port. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    await Promise.allSettled([...this.terminals.values()].map((t) => t.close('SHUTTING_DOWN')));
    // the PBX must see every terminal unavailable before the link goes
    await Promise.allSettled([...this.presence.values()]);
    for (const ws of this.sockets) ws.close(1001, closeReason('SHUTTING_DOWN'));
    this.tokens.close();
    this.admission.close();
    if (this.config.server.tls) for (const f of [this.config.server.tls.cert, this.config.server.tls.key]) unwatchFile(f);
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeAllConnections();
    await closed;
  }
}
