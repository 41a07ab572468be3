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

  /** tokens left now (for handing the bucket to the native media pump and back) */
  get level(): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.ratePerMs);
    this.last = now;
    return this.tokens;
  }

  /** Continues from `tokens` left, as of now. */
  setLevel(tokens: number): void {
    this.tokens = Math.min(this.burst, Math.max(0, tokens));
    this.last = performance.now();
  }

  get burstSize(): number {
    return this.burst;
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
