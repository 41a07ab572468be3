/**
 * The primary's worker processes (`server.workers` > 1): forks them, hands each one the sockets
 * the UpgradeRouter routes to it, restarts one that dies (its terminals reconnect and land on the
 * new one), and stops them all. The worker side is WorkerLink.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { AggregatorRegistry } from 'prom-client';
import type { Socket } from 'node:net';
import type { Logger } from '../logger.ts';
import type { ErrorCode } from '../errors.ts';
import type { Handoff } from './UpgradeRouter.ts';
import { aggregateHealth, type BridgeHealth, type Health } from './health.ts';

/** IPC message type: the primary asks a worker for its metrics, the worker answers with them */
export const WORKER_METRICS = 'confmux:metrics';
/** IPC message type: the primary asks a worker for its health (/healthz), the worker answers with it */
export const WORKER_HEALTH = 'confmux:health';

/** A question the primary asks a worker (WorkerPool.ask); the worker's answer has the same type and id. */
export interface WorkerQuestion {
  type: string;
  id: number;
}

/** the IPC message that comes with a socket */
export interface HandoffMessage {
  type: 'confmux:connection';
  kind: Handoff['kind'];
  /** the bytes already read from the socket, base64 */
  head: string;
  /** the primary's per-address limits refuse it: the worker closes it with this code */
  refuse?: ErrorCode;
  /** the handoff's number, which the worker's WORKER_ADOPTED names */
  seq: number;
}

/** IPC message type: a worker has adopted the socket of handoff `seq` (the primary closes its descriptor) */
export const WORKER_ADOPTED = 'confmux:adopted';

export interface AdoptedMessage {
  type: typeof WORKER_ADOPTED;
  seq: number;
}

/** IPC message type: a worker tells the primary that a WebSocket it was handed (not refused) closed */
export const WORKER_CLOSED = 'confmux:closed';

export interface ClosedMessage {
  type: typeof WORKER_CLOSED;
  /** the client's address */
  ip: string;
}

export interface WorkerPoolOptions {
  /** the worker's entry module */
  script: string;
  count: number;
  /** node options of the workers (e.g. tsx's loader) */
  execArgv: string[];
  /** extra environment; each worker also gets CONFMUX_WORKER_INDEX and CONFMUX_WORKERS */
  env?: Record<string, string>;
  log: Logger;
  /** the primary's per-address counts (the UpgradeRouter), once it exists */
  primary?: () => PrimaryCounts | null;
  /** how long a terminal's connection waits for its worker while that one is started again [5000] */
  holdMs?: number;
}

/** What the primary counts over all workers (UpgradeRouter, PrimaryAdmission). */
export interface PrimaryCounts {
  /** a WebSocket handed to `worker` (not refused) closed */
  connectionClosed(worker: number, ip: string): void;
  /** `worker` exited (it is started again): every connection it held is gone */
  workerGone(worker: number): void;
  /** a failed login from `ip` on any worker: until when the address is locked out (epoch ms, 0: not) */
  loginFailed(ip: string): number;
}

/** IPC message type: a worker saw a failed login (wrong password or resume token) from an address */
export const WORKER_LOGIN_FAILED = 'confmux:login-failed';
/** IPC message type: the primary tells every worker that an address is locked out until `until` (epoch ms) */
export const WORKER_LOCKOUT = 'confmux:lockout';

export interface AddressMessage {
  type: typeof WORKER_LOGIN_FAILED | typeof WORKER_LOCKOUT;
  ip: string;
  until?: number;
}

/** A WebSocket the primary's per-address limits count (admitted, not refused) until its worker says it closed. */
function counted(handoff: Handoff): boolean {
  return handoff.kind === 'ws' && handoff.refuse === undefined;
}

/** A client's address as the primary and the workers name it in their counts. */
export function addressOf(socket: Socket): string {
  return socket.remoteAddress ?? 'unknown';
}

export class WorkerPool {
  private readonly options: WorkerPoolOptions;
  private readonly children: (ChildProcess | null)[];
  /** per worker: sockets handed to it that it has not said it adopted, by handoff number */
  private readonly inFlight: Map<number, Socket>[] = [];
  private handoffs = 0;
  /** per worker: pinned sockets waiting for it to be ready */
  private readonly held: Set<{ socket: Socket; ip: string; handoff: Handoff; timer: NodeJS.Timeout }>[] = [];
  private readonly ready: boolean[];
  private stopping = false;
  /** the last WorkerQuestion id */
  private questions = 0;
  private stopped: Promise<void> | null = null;

  constructor(options: WorkerPoolOptions) {
    this.options = options;
    this.children = new Array<ChildProcess | null>(options.count).fill(null);
    for (let k = 0; k < options.count; k++) this.held.push(new Set());
    this.ready = new Array<boolean>(options.count).fill(false);
  }

  /** Forks every worker; resolves once each has said it is ready. */
  async start(): Promise<void> {
    await Promise.all(this.children.map((_, k) => this.spawn(k)));
  }

  get pids(): number[] {
    return this.children.map((c) => c?.pid ?? 0).filter((p) => p > 0);
  }

  private spawn(k: number): Promise<void> {
    const { script, execArgv, env, count, log } = this.options;
    const child = fork(script, [], {
      execArgv,
      env: { ...process.env, ...env, CONFMUX_WORKER_INDEX: String(k), CONFMUX_WORKERS: String(count) },
      serialization: 'json',
    });
    this.children[k] = child;
    this.ready[k] = false;
    const inFlight = (this.inFlight[k] = new Map<number, Socket>());
    child.on('message', (m: unknown) => {
      if (this.children[k] !== child) return;
      const msg = m as { type?: string } | null;
      if (msg?.type === WORKER_CLOSED && typeof (msg as Partial<ClosedMessage>).ip === 'string') this.options.primary?.()?.connectionClosed(k, (msg as ClosedMessage).ip);
      if (msg?.type === WORKER_LOGIN_FAILED && typeof (msg as Partial<AddressMessage>).ip === 'string') {
        // counted over all workers: a lockout goes to every worker
        const ip = (msg as AddressMessage).ip;
        const until = this.options.primary?.()?.loginFailed(ip) ?? 0;
        if (until > 0) this.broadcast({ type: WORKER_LOCKOUT, ip, until } satisfies AddressMessage);
      }
      if (msg?.type === WORKER_ADOPTED) {
        // the worker holds it now: this process's descriptor goes
        const seq = (msg as Partial<AdoptedMessage>).seq;
        const socket = typeof seq === 'number' ? inFlight.get(seq) : undefined;
        if (socket === undefined) return;
        inFlight.delete(seq!);
        socket.destroy();
      }
    });
    child.on('exit', (code, signal) => {
      if (this.children[k] === child) this.children[k] = null;
      this.ready[k] = false;
      // sockets it had not adopted are closed here (it never had them)
      for (const socket of inFlight.values()) socket.destroy();
      inFlight.clear();
      this.options.primary?.()?.workerGone(k);
      if (this.stopping) return;
      log.error({ worker: k, code, signal }, 'worker exited: starting another');
      setTimeout(() => {
        if (!this.stopping) void this.spawn(k).catch((err: unknown) => log.error({ worker: k, err: (err as Error).message }, 'worker did not start'));
      }, 1000).unref();
    });
    return new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if ((m as { type?: string })?.type !== 'confmux:ready') return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        this.ready[k] = true;
        // the terminals' connections that waited for it
        for (const entry of this.held[k]!) {
          clearTimeout(entry.timer);
          if (!entry.socket.destroyed) this.send(k, entry.socket, entry.handoff);
          else if (counted(entry.handoff)) this.options.primary?.()?.connectionClosed(k, entry.ip);
        }
        this.held[k]!.clear();
        resolve();
      };
      const onExit = (): void => reject(new Error(`worker ${k} exited before it was ready`));
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }

  /**
   * Hands a socket to worker k (`handoff.pinned`: to k only, waiting up to `holdMs` while k is
   * being started again; otherwise the next live one if k is down). Returns the worker that took
   * it (or will), or null when none could (the socket is destroyed).
   *
   * A terminal's connections are pinned to the worker that owns its number: handed to another
   * worker while its own restarts, a terminal would register there and then find its media
   * connections, and the PBX's invitations, routed to its own worker, which does not know it.
   *
   * This process keeps its own descriptor of the socket until the worker says it adopted it
   * (WORKER_ADOPTED), then closes it; if the worker dies first, the socket is closed here. Without
   * that, a socket sent to a worker that died before reading it stays open with nobody holding it
   * (Node queues a socket until the worker acknowledged the previous one, and a socket in the
   * queue of a dead worker's channel is never closed): its client would wait forever.
   */
  handOff(k: number, socket: Socket, handoff: Handoff): number | null {
    // paused and no longer read here, but never an unhandled error while this process holds it
    socket.on('error', () => socket.destroy());
    const live = (j: number): boolean => this.ready[j] === true && this.children[j]?.connected === true;
    let taker = -1;
    if (handoff.pinned === true) {
      if (live(k)) taker = k;
      else if (!this.stopping) {
        this.hold(k, socket, handoff);
        return k;
      }
    } else {
      for (let i = 0; i < this.children.length && taker < 0; i++) {
        const j = (k + i) % this.children.length;
        if (live(j)) taker = j;
      }
    }
    if (taker < 0) {
      socket.destroy();
      return null;
    }
    this.send(taker, socket, handoff);
    return taker;
  }

  /** Keeps a pinned socket until worker k is ready (then sends it), or closes it after holdMs. */
  private hold(k: number, socket: Socket, handoff: Handoff): void {
    const held = this.held[k]!;
    // the address as the primary counted it (a socket closed meanwhile no longer has one)
    const ip = addressOf(socket);
    const entry = {
      socket,
      ip,
      handoff,
      timer: setTimeout(() => {
        held.delete(entry);
        socket.destroy();
        if (counted(handoff)) this.options.primary?.()?.connectionClosed(k, ip);
      }, this.options.holdMs ?? 5000),
    };
    held.add(entry);
  }

  private send(taker: number, socket: Socket, handoff: Handoff): void {
    const seq = ++this.handoffs;
    const msg: HandoffMessage = { type: 'confmux:connection', kind: handoff.kind, head: handoff.head.toString('base64'), seq };
    if (handoff.refuse !== undefined) msg.refuse = handoff.refuse;
    const ip = addressOf(socket);
    const inFlight = this.inFlight[taker]!;
    inFlight.set(seq, socket);
    this.children[taker]!.send(msg, socket, { keepOpen: true }, (err) => {
      if (!err || !inFlight.delete(seq)) return;
      socket.destroy();
      // the worker never had it: it will not say it closed
      if (counted(handoff)) this.options.primary?.()?.connectionClosed(taker, ip);
    });
  }

  /** Sends a message to every ready worker (no answer expected). */
  broadcast(message: object): void {
    for (let k = 0; k < this.children.length; k++) {
      const c = this.children[k];
      if (c && this.ready[k] && c.connected) c.send(message, (err) => void err);
    }
  }

  /**
   * Sends `{ type, id, ...body }` to every ready worker and collects each one's reply (its message
   * with the same `type` and `id`, so that questions asked at once get their own answers), in worker
   * order; a worker that does not answer within `timeoutMs` is left out. For figures only the
   * workers have: their metrics, the benchmark's pump counters.
   */
  ask(type: string, body: Record<string, unknown> = {}, timeoutMs = 2000): Promise<unknown[]> {
    const asked = this.children.filter((c, k): c is ChildProcess => c !== null && this.ready[k] === true && c.connected);
    const id = ++this.questions;
    return Promise.all(
      asked.map(
        (child) =>
          new Promise<unknown>((resolve) => {
            const done = (reply: unknown): void => {
              clearTimeout(timer);
              child.off('message', onMessage);
              resolve(reply);
            };
            const onMessage = (m: unknown): void => {
              const reply = m as Partial<WorkerQuestion> | null;
              if (reply?.type === type && reply.id === id) done(m);
            };
            const timer = setTimeout(() => done(undefined), timeoutMs);
            child.on('message', onMessage);
            child.send({ ...body, type, id }, (err) => {
              if (err) done(undefined);
            });
          }),
      ),
    ).then((replies) => replies.filter((r) => r !== undefined));
  }

  /**
   * /metrics for the whole bridge: every worker's registry (prom-client JSON over IPC) aggregated,
   * counters and gauges summed, the relay-latency quantiles the worst worker's. A worker that does
   * not answer in time is left out.
   */
  async metrics(): Promise<{ contentType: string; body: string }> {
    const replies = (await this.ask(WORKER_METRICS)) as { metrics?: object[] }[];
    const registry = AggregatorRegistry.aggregate(replies.map((r) => r.metrics ?? []));
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /**
   * /healthz for the whole bridge: every worker's health (health.ts aggregateHealth). A worker that
   * does not answer within `timeoutMs` counts as down, so that a hung worker turns the answer 503.
   */
  async health(mediaServer: string, timeoutMs = 1000): Promise<BridgeHealth> {
    const replies = (await this.ask(WORKER_HEALTH, {}, timeoutMs)) as { health?: Health }[];
    const answers = replies.map((r) => r.health).filter((h): h is Health => h !== undefined);
    const health = aggregateHealth(answers, this.children.length, mediaServer);
    return this.stopping ? { ...health, status: 'draining' } : health;
  }

  /** Asks every worker to drain (SIGTERM) or stop now (SIGINT) and waits for them. Idempotent. */
  stop(signal: 'SIGTERM' | 'SIGINT' = 'SIGTERM'): Promise<void> {
    if (this.stopped) return this.stopped;
    this.stopping = true;
    for (const held of this.held) {
      for (const { socket, timer } of held) {
        clearTimeout(timer);
        socket.destroy();
      }
      held.clear();
    }
    this.stopped = Promise.all(
      this.children.map((c) => {
        if (c === null || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
        return new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill(signal);
        });
      }),
    ).then(() => undefined);
    return this.stopped;
  }
}
