/** A token bucket: `take()` is true while the rate (per second) and burst allow. No timers. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly ratePerMs: number;
  private readonly burst: number;

  constructor(ratePerSecond: number, burst: number, now = performance.now()) {
    this.ratePerMs = ratePerSecond / 1000;
    this.burst = burst;
    this.tokens = burst;
    this.last = now;
  }

  take(now = performance.now()): boolean {
    const elapsed = now - this.last;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.ratePerMs);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
