/**
 * Who may open a connection and try a login: per-IP concurrency and connection rate, a cap on
 * connections still waiting to bind, and failed-login throttling per number and per IP address.
 * After `loginFailuresAllowed` failures a number (or an address) is locked out for a window that
 * doubles with every further failure, up to 15 minutes: brute force gets slower, never faster.
 * Timers: none; state is pruned as it is touched and by a slow sweep.
 */
import type { Config } from '../config.ts';
import type { ErrorCode } from '../errors.ts';
import { TokenBucket } from './TokenBucket.ts';

const MAX_LOCKOUT_MS = 15 * 60_000;
const FORGET_AFTER_MS = 30 * 60_000;

interface Failures {
  count: number;
  lockedUntil: number;
  last: number;
}

export class Admission {
  private readonly limits: Config['limits'];
  private readonly perIp = new Map<string, number>();
  private readonly rates = new Map<string, TokenBucket>();
  private readonly failures = new Map<string, Failures>();
  private unauthenticated = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(limits: Config['limits']) {
    this.limits = limits;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** A new connection from `ip`: null when admitted (call release() when it closes), else why not. */
  admit(ip: string): ErrorCode | null {
    let bucket = this.rates.get(ip);
    if (!bucket) this.rates.set(ip, (bucket = new TokenBucket(this.limits.connectionsPerSecondPerIp, this.limits.connectionBurstPerIp)));
    if (!bucket.take()) return 'RATE_LIMITED';
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.limits.maxConnectionsPerIp || this.unauthenticated >= this.limits.maxUnauthenticated) return 'TOO_MANY_CONNECTIONS';
    this.perIp.set(ip, n + 1);
    this.unauthenticated++;
    return null;
  }

  /** The connection bound (or was refused): it no longer counts as waiting. */
  bound(): void {
    if (this.unauthenticated > 0) this.unauthenticated--;
  }

  release(ip: string, stillUnbound: boolean): void {
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
    if (stillUnbound) this.bound();
  }

  /** Milliseconds until a login of `number` from `ip` may be tried again; 0 when it may now. */
  loginWait(number: string, ip: string, now = Date.now()): number {
    const a = this.failures.get(`n:${number}`);
    const b = this.failures.get(`ip:${ip}`);
    return Math.max(0, (a?.lockedUntil ?? 0) - now, (b?.lockedUntil ?? 0) - now);
  }

  loginFailed(number: string, ip: string, now = Date.now()): void {
    this.fail(`n:${number}`, now);
    this.fail(`ip:${ip}`, now);
  }

  /** A failed login from `ip`, counted for the address only; returns until when it is locked out (0: not). */
  addressFailed(ip: string, now = Date.now()): number {
    return this.fail(`ip:${ip}`, now);
  }

  /** `ip` is locked out until `until` (epoch ms) whatever this process counted (the primary's count over all workers). */
  lockAddress(ip: string, until: number, now = Date.now()): void {
    const key = `ip:${ip}`;
    const f = this.failures.get(key) ?? { count: 0, lockedUntil: 0, last: now };
    f.lockedUntil = Math.max(f.lockedUntil, until);
    f.last = now;
    this.failures.set(key, f);
  }

  private fail(key: string, now: number): number {
    const f = this.failures.get(key) ?? { count: 0, lockedUntil: 0, last: now };
    f.count++;
    f.last = now;
    const over = f.count - this.limits.loginFailuresAllowed;
    if (over >= 0) f.lockedUntil = now + Math.min(MAX_LOCKOUT_MS, this.limits.loginThrottleMs * 2 ** over);
    this.failures.set(key, f);
    return f.lockedUntil > now ? f.lockedUntil : 0;
  }

  loginSucceeded(number: string): void {
    // a number that proved itself starts afresh; its address keeps its record (shared NATs guess)
    this.failures.delete(`n:${number}`);
  }

  private sweep(now = Date.now()): void {
    for (const [k, f] of this.failures) if (now - f.last > FORGET_AFTER_MS && f.lockedUntil < now) this.failures.delete(k);
    for (const ip of this.rates.keys()) if (!this.perIp.has(ip)) this.rates.delete(ip);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
