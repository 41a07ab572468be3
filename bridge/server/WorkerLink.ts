/**
 * A worker's side of `server.workers` > 1: takes the sockets the primary hands over (WorkerPool)
 * into this worker's BridgeServer, and tells the primary when it is ready for them.
 */
import type { Socket } from 'node:net';
import type { BridgeServer } from './BridgeServer.ts';
import { WORKER_HEALTH, WORKER_METRICS, type HandoffMessage, type WorkerQuestion } from './WorkerPool.ts';
import { workerForNumber } from './UpgradeRouter.ts';

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
    if (msg?.type === WORKER_HEALTH) {
      // the primary answers /healthz for all workers: this one's health
      process.send?.({ type: WORKER_HEALTH, id: (msg as Partial<WorkerQuestion>).id, health: this.server.health() });
      return;
    }
    if (msg?.type !== 'confmux:connection' || !socket || !('kind' in msg)) return;
    this.server.adopt(socket as Socket, { kind: msg.kind === 'ws' ? 'ws' : 'http', head: Buffer.from(msg.head ?? '', 'base64') });
  };
  private closed = false;

  constructor(server: BridgeServer) {
    this.server = server;
  }

  /** Starts taking connections and tells the primary so. */
  start(): void {
    process.on('message', this.onMessage);
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
