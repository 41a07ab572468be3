/**
 * A worker's side of `server.workers` > 1: takes the sockets the primary hands over (WorkerPool)
 * into this worker's BridgeServer, and tells the primary when it is ready for them.
 */
import type { Socket } from 'node:net';
import type { BridgeServer } from './BridgeServer.ts';
import { addressOf, WORKER_ADOPTED, WORKER_CLOSED, WORKER_HEALTH, WORKER_LOCKOUT, WORKER_LOGIN_FAILED, WORKER_METRICS, type AddressMessage, type AdoptedMessage, type ClosedMessage, type HandoffMessage, type WorkerQuestion } from './WorkerPool.ts';
import { workerForNumber } from './UpgradeRouter.ts';
import { isErrorCode } from '../errors.ts';

/** this process's worker index and the worker count, when it runs as a worker (else null) */
export function workerIdentity(env: NodeJS.ProcessEnv = process.env): { index: number; count: number } | null {
  if (env.CONFMUX_WORKER_INDEX === undefined || typeof process.send !== 'function') return null;
  return { index: Number(env.CONFMUX_WORKER_INDEX), count: Number(env.CONFMUX_WORKERS ?? '1') };
}

/** whether `number` is routed to worker `index` of `count` (the primary's routing) */
export function ownsNumber(index: number, count: number): (number: string) => boolean {
  return (number) => workerForNumber(number, count) === index;
}

export class WorkerLink {
  private readonly server: BridgeServer;
  private readonly onMessage = (m: unknown, socket: unknown): void => {
    const msg = m as Partial<HandoffMessage> | Partial<WorkerQuestion> | null;
    if (msg?.type === WORKER_METRICS) {
      // the primary answers /metrics for all workers: this one's share, as prom-client JSON
      const id = (msg as Partial<WorkerQuestion>).id;
      void this.server.metrics.registry.getMetricsAsJSON().then(
        (metrics) => process.send?.({ type: WORKER_METRICS, id, metrics }),
        () => process.send?.({ type: WORKER_METRICS, id, metrics: [] }),
      );
      return;
    }
    if (msg?.type === WORKER_LOCKOUT) {
      const { ip, until } = msg as Partial<AddressMessage>;
      if (typeof ip === 'string' && typeof until === 'number') this.server.lockAddress(ip, until);
      return;
    }
    if (msg?.type === WORKER_HEALTH) {
      // the primary answers /healthz for all workers: this one's health
      process.send?.({ type: WORKER_HEALTH, id: (msg as Partial<WorkerQuestion>).id, health: this.server.health() });
      return;
    }
    if (msg?.type !== 'confmux:connection' || !socket || !('kind' in msg)) return;
    const conn = socket as Socket;
    const kind = msg.kind === 'ws' ? 'ws' : 'http';
    const refuse = typeof msg.refuse === 'string' && isErrorCode(msg.refuse) ? msg.refuse : undefined;
    if (kind === 'ws' && refuse === undefined) {
      // counted by the primary's per-address limits until it closes
      const ip = addressOf(conn);
      conn.once('close', () => {
        if (process.connected) process.send?.({ type: WORKER_CLOSED, ip } satisfies ClosedMessage);
      });
    }
    // the primary keeps its descriptor of the socket until this says it has it
    if (typeof msg.seq === 'number' && process.connected) process.send?.({ type: WORKER_ADOPTED, seq: msg.seq } satisfies AdoptedMessage);
    const head = Buffer.from(msg.head ?? '', 'base64');
    this.server.adopt(conn, refuse === undefined ? { kind, head } : { kind, head, refuse });
  };
  private closed = false;

  constructor(server: BridgeServer) {
    this.server = server;
  }

  /** Starts taking connections and tells the primary so. */
  start(): void {
    process.on('message', this.onMessage);
    // failed logins per address are counted by the primary over all workers
    this.server.reportAddressFailures((ip) => {
      if (process.connected) process.send?.({ type: WORKER_LOGIN_FAILED, ip } satisfies AddressMessage);
    });
    this.server.startServing();
    process.send!({ type: 'confmux:ready' });
  }

  /** Stops taking connections. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('message', this.onMessage);
  }
}
