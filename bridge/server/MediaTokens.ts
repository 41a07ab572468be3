/**
 * Short-lived, single-use tokens that let a media connection bind to one terminal's call and
 * media kind. 144 random bits each; compared by map lookup, never logged.
 */
import { randomBytes } from 'node:crypto';
import type { MediaKind } from '../protocol/messages.ts';

interface Grant {
  number: string;
  callId: string;
  kind: MediaKind;
  expires: number;
}

export class MediaTokens {
  private readonly grants = new Map<string, Grant>();
  private readonly ttlMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.min(ttlMs, 30000)));
    this.sweeper.unref();
  }

  get size(): number {
    return this.grants.size;
  }

  issue(number: string, callId: string, kind: MediaKind): string {
    const token = randomBytes(18).toString('base64url');
    this.grants.set(token, { number, callId, kind, expires: Date.now() + this.ttlMs });
    return token;
  }

  /** true once for a valid, unexpired token issued for exactly this number, call and kind. */
  consume(token: string, number: string, callId: string, kind: MediaKind): boolean {
    const grant = this.grants.get(token);
    if (!grant) return false;
    this.grants.delete(token);
    return grant.expires > Date.now() && grant.number === number && grant.callId === callId && grant.kind === kind;
  }

  revokeCall(callId: string): void {
    for (const [token, grant] of this.grants) if (grant.callId === callId) this.grants.delete(token);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, grant] of this.grants) if (grant.expires <= now) this.grants.delete(token);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.grants.clear();
  }
}
