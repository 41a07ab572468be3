/**
 * EslLink over node:net: one inbound event-socket connection. ESL answers every command exactly
 * once and in order (api -> api/response, anything else -> command/reply), so pending requests sit
 * in an insertion-ordered map and each reply settles the oldest. A request that times out stays in
 * the map as a placeholder so its late reply is consumed and not mistaken for the next one's.
 * When the socket drops, every pending request and background job is rejected, `down` is emitted
 * (if the link was up), and it reconnects with backoff until close().
 */
import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../bridge/logger.ts';
import { EslParser, encodeCommand, parseJsonEvent, parsePlainEvent, type EslMessage } from './eslFraming.ts';
import {
  EslAuthError,
  EslCommandError,
  EslError,
  EslLinkDownError,
  EslTimeoutError,
  apiResult,
  type EslEvent,
  type EslLink,
  type EslLinkEvents,
} from './EslLink.ts';

export interface NetEslLinkOptions {
  host: string;
  port: number;
  password: string;
  /**
   * the `event` subscription, word by word as sent (`CHANNEL_ANSWER`, `CUSTOM`,
   * `conference::maintenance` ...), renewed on every connection; bgapi needs BACKGROUND_JOB in it.
   * Empty: no subscription.
   */
  events: readonly string[];
  /** Job-UUIDs for bgapi (tests replaying a transcript pass the recorded one) */
  newJobId?: () => string;
  format?: 'plain' | 'json';
  requestTimeoutMs: number;
  log: Logger;
  /** backoff bounds (tests shorten them) */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

interface Pending {
  what: string;
  /** null: timed out already; the reply is swallowed */
  settle: ((msg: EslMessage) => void) | null;
  fail: ((err: Error) => void) | null;
  timer: NodeJS.Timeout | null;
}

interface Job {
  what: string;
  resolve: (body: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

class ParsedEvent implements EslEvent {
  readonly name: string;
  readonly subclass: string;
  readonly uuid: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
  constructor(headers: Map<string, string>, body: string) {
    this.headers = headers;
    this.body = body;
    this.name = headers.get('Event-Name') ?? '';
    this.subclass = headers.get('Event-Subclass') ?? '';
    this.uuid = headers.get('Unique-ID') ?? '';
  }
  get(name: string): string | undefined {
    return this.headers.get(name);
  }
}

export class NetEslLink extends EventEmitter<EslLinkEvents> implements EslLink {
  private readonly opts: NetEslLinkOptions;
  private readonly log: Logger;
  private socket: Socket | null = null;
  private up = false;
  private closed = false;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly jobs = new Map<string, Job>();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelayMs: number;
  private readonly minDelay: number;
  private readonly maxDelay: number;

  constructor(opts: NetEslLinkOptions) {
    super();
    this.opts = opts;
    this.log = opts.log;
    this.minDelay = opts.reconnectMinMs ?? 500;
    this.maxDelay = opts.reconnectMaxMs ?? 10000;
    this.reconnectDelayMs = this.minDelay;
  }

  get isUp(): boolean {
    return this.up;
  }

  async connect(): Promise<void> {
    if (this.closed) throw new EslLinkDownError('ESL link closed');
    try {
      await this.attempt();
    } catch (err) {
      this.scheduleReconnect();
      throw err;
    }
  }

  /** One connection: greeting, auth, event subscription. */
  private attempt(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = netConnect({ host: this.opts.host, port: this.opts.port });
      this.socket = socket;
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 10000);
      const parser = new EslParser();
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(greetingTimer);
        socket.destroy();
        reject(err);
      };
      const greetingTimer = setTimeout(() => fail(new EslTimeoutError(`no ESL greeting from ${this.opts.host}:${this.opts.port} within ${this.opts.requestTimeoutMs} ms`)), this.opts.requestTimeoutMs);
      socket.on('data', (chunk: Buffer) => {
        let messages: EslMessage[];
        try {
          messages = parser.push(chunk);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'ESL stream unreadable; reconnecting');
          socket.destroy();
          return;
        }
        for (const msg of messages) {
          if (msg.headers.get('Content-Type') === 'auth/request' && !settled) {
            clearTimeout(greetingTimer);
            this.handshake(socket).then(
              () => {
                if (settled) return;
                settled = true;
                this.reconnectDelayMs = this.minDelay;
                this.setUp();
                resolve();
              },
              (err: Error) => fail(err),
            );
          } else this.onMessage(msg);
        }
      });
      socket.on('error', (err) => {
        this.log.debug({ err: err.message }, 'ESL socket error');
        fail(new EslLinkDownError(`ESL ${this.opts.host}:${this.opts.port}: ${err.message}`, { cause: err }));
      });
      socket.on('close', () => {
        if (this.socket === socket) this.socket = null;
        this.failAll(new EslLinkDownError('ESL connection closed'));
        // 'close' can run (nextTick) before the promise chain that reads a refused auth settles;
        // give that chain its turn so a wrong password reports as EslAuthError
        setImmediate(() => fail(new EslLinkDownError('ESL connection closed during the handshake')));
        this.setDown(new EslLinkDownError('ESL connection lost'));
        this.scheduleReconnect();
      });
    });
  }

  private async handshake(socket: Socket): Promise<void> {
    await this.command(socket, `auth ${this.opts.password}`, undefined, 'auth').catch((err: unknown) => {
      throw err instanceof EslCommandError ? new EslAuthError() : err;
    });
    if (this.opts.events.length === 0) return;
    await this.command(socket, `event ${this.opts.format ?? 'plain'} ${this.opts.events.join(' ')}`, undefined, 'event');
  }

  private onMessage(msg: EslMessage): void {
    const type = msg.headers.get('Content-Type');
    switch (type) {
      case 'api/response':
      case 'command/reply': {
        const first = this.pending.entries().next();
        if (first.done) {
          this.log.warn({ type }, 'ESL reply with no request pending');
          return;
        }
        const [id, p] = first.value;
        this.pending.delete(id);
        if (p.timer) clearTimeout(p.timer);
        p.settle?.(msg);
        return;
      }
      case 'text/event-plain':
      case 'text/event-json': {
        let event: ParsedEvent;
        try {
          const parsed = type === 'text/event-plain' ? parsePlainEvent(msg.body) : parseJsonEvent(msg.body);
          event = new ParsedEvent(parsed.headers, parsed.body);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'unreadable ESL event dropped');
          return;
        }
        if (event.name === 'BACKGROUND_JOB') this.onJob(event);
        this.emit('event', event);
        return;
      }
      case 'text/disconnect-notice':
        // the server closes right after (or lingers, for a myevents session we never open)
        this.log.debug({ disposition: msg.headers.get('Content-Disposition') }, 'ESL disconnect notice');
        return;
      default:
        return; // log/data and anything newer: not ours
    }
  }

  private onJob(event: ParsedEvent): void {
    const id = event.get('Job-UUID') ?? '';
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.delete(id);
    clearTimeout(job.timer);
    try {
      job.resolve(apiResult(job.what, event.body));
    } catch (err) {
      job.reject(err as Error);
    }
  }

  /** Writes one command; resolves with its reply message. */
  private exchange(socket: Socket, line: string, headers: Readonly<Record<string, string>> | undefined, what: string): Promise<EslMessage> {
    const bytes = encodeCommand(line, headers);
    return new Promise<EslMessage>((resolve, reject) => {
      const id = ++this.seq;
      const p: Pending = { what, settle: resolve, fail: reject, timer: null };
      p.timer = setTimeout(() => {
        // keep the placeholder: the late reply must still be matched to this request
        p.settle = null;
        p.fail = null;
        p.timer = null;
        reject(new EslTimeoutError(`${what}: no reply within ${this.opts.requestTimeoutMs} ms`));
      }, this.opts.requestTimeoutMs);
      this.pending.set(id, p);
      socket.write(bytes);
    });
  }

  /** A non-api command: its Reply-Text must start with +OK. */
  private async command(socket: Socket, line: string, headers: Readonly<Record<string, string>> | undefined, what: string): Promise<string> {
    const reply = await this.exchange(socket, line, headers, what);
    const text = reply.headers.get('Reply-Text') ?? '';
    if (!text.startsWith('+OK')) throw new EslCommandError(what, text.replace(/^-ERR\s*/, ''));
    return text;
  }

  private live(what: string): Socket {
    if (!this.up || !this.socket) throw new EslLinkDownError(`${what}: ESL link is down`);
    return this.socket;
  }

  async api(command: string): Promise<string> {
    const what = `api ${command.split(' ', 1)[0]}`;
    const reply = await this.exchange(this.live(what), `api ${command}`, undefined, what);
    if (reply.headers.get('Content-Type') === 'command/reply') {
      // an ESL-level refusal (e.g. a bare `api`): no api/response at all
      throw new EslCommandError(what, (reply.headers.get('Reply-Text') ?? '').replace(/^-ERR\s*/, ''));
    }
    return apiResult(what, reply.body);
  }

  async bgapi(command: string, timeoutMs = this.opts.requestTimeoutMs): Promise<string> {
    const what = `bgapi ${command.split(' ', 1)[0]}`;
    const socket = this.live(what);
    const jobId = (this.opts.newJobId ?? randomUUID)();
    const result = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.jobs.delete(jobId);
        reject(new EslTimeoutError(`${what}: job not done within ${timeoutMs} ms`));
      }, timeoutMs);
      this.jobs.set(jobId, { what, resolve, reject, timer });
    });
    // a rejection before the job result is awaited must not go unhandled
    result.catch(() => undefined);
    try {
      await this.command(socket, `bgapi ${command}`, { 'Job-UUID': jobId }, what);
    } catch (err) {
      const job = this.jobs.get(jobId);
      if (job) {
        clearTimeout(job.timer);
        this.jobs.delete(jobId);
      }
      throw err;
    }
    return result;
  }

  async sendmsg(uuid: string, headers: Readonly<Record<string, string>>): Promise<void> {
    await this.command(this.live('sendmsg'), `sendmsg ${uuid}`, headers, `sendmsg ${headers['call-command'] ?? ''}`.trim());
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      p.fail?.(err);
      this.pending.delete(id);
    }
    for (const [id, job] of this.jobs) {
      clearTimeout(job.timer);
      job.reject(err);
      this.jobs.delete(id);
    }
  }

  private setUp(): void {
    if (this.up || this.closed) return;
    this.up = true;
    this.emit('up');
  }

  private setDown(err: EslError): void {
    if (!this.up) return;
    this.up = false;
    this.emit('down', err);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer || this.up) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, this.maxDelay);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed || this.socket) return;
      this.attempt().catch((err: unknown) => {
        this.log.debug({ err: (err as Error).message, retryInMs: this.reconnectDelayMs }, 'ESL reconnect failed');
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    this.failAll(new EslLinkDownError('ESL link closed'));
    this.setDown(new EslLinkDownError('ESL link closed'));
    if (socket) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        // a half-close is enough: FreeSWITCH answers with its disconnect notice and closes (every
        // transcript ends this way); do not wait long for it
        socket.end();
        setTimeout(() => socket.destroy(), 200).unref();
      });
    }
  }
}
