/**
 * The per-address limits with `server.workers` > 1, kept by the primary, which sees every
 * connection: per-IP connection rate and concurrency, and the cap on connections still waiting to
 * bind (Admission's rules), counted over all workers rather than per worker. A WebSocket is counted
 * from its upgrade until it closes: in the primary until it is handed over, then until the worker
 * that holds it says it closed (WorkerLink), or that worker exits.
 * Failed logins: per number they are counted by the worker (a number always lands on the same
 * one); per address the workers report each failure here, and a lockout reached over all of them
 * is sent to every worker (WorkerPool).
 */
import type { Config } from '../config.ts';
import type { ErrorCode } from '../errors.ts';
import { Admission } from './Admission.ts';

export class PrimaryAdmission {
  private readonly admission: Admission;
  /** per worker: address -> connections it holds that were counted here */
  private readonly held = new Map<number, Map<string, number>>();

  constructor(limits: Config['limits']) {
    this.admission = new Admission(limits);
  }

  /** An upgraded connection from `ip`: null when admitted, else the refusal (the worker sends it). */
  admit(ip: string): ErrorCode | null {
    return this.admission.admit(ip);
  }

  /** An admitted connection closed before it was handed over. */
  abandoned(ip: string): void {
    this.admission.release(ip, true);
  }

  /** An admitted connection was handed to `worker` (its bind, if any, is the worker's to check). */
  handedTo(worker: number, ip: string): void {
    this.admission.bound();
    let m = this.held.get(worker);
    if (!m) this.held.set(worker, (m = new Map()));
    m.set(ip, (m.get(ip) ?? 0) + 1);
  }

  /** `worker` says a connection from `ip` that was handed to it closed. */
  closed(worker: number, ip: string): void {
    const m = this.held.get(worker);
    const n = m?.get(ip) ?? 0;
    if (n <= 0) return;
    if (n === 1) m!.delete(ip);
    else m!.set(ip, n - 1);
    this.admission.release(ip, false);
  }

  /** `worker` exited: every connection it held is gone. */
  workerGone(worker: number): void {
    const m = this.held.get(worker);
    if (!m) return;
    this.held.delete(worker);
    for (const [ip, n] of m) for (let i = 0; i < n; i++) this.admission.release(ip, false);
  }

  /** A failed login from `ip` on any worker: until when the address is locked out (0: not). */
  loginFailed(ip: string): number {
    return this.admission.addressFailed(ip);
  }

  close(): void {
    this.admission.close();
  }
}
