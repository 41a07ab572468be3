/**
 * What the JavaScript load generators (bench/run.ts for confmux, bench/turn.ts for coturn) count:
 * frames sent and received since the start and in the measured window, and the round trips of the
 * frames sent in the window (the native generator counts the same in native/loadgen.cc).
 */
import { performance } from 'node:perf_hooks';
import { Histogram } from './proc.ts';
import type { LoadCounts } from './NativeLoadGen.ts';

export class FrameTally {
  private readonly hist = new Histogram();
  private windowStart = Infinity;
  private windowEnd = Infinity;
  private sentTotal = 0;
  private receivedTotal = 0;
  private sentInWindow = 0;
  private receivedInWindow = 0;

  /** the window starts `delayMs` from now and lasts `ms`; the window's counts and round trips start again */
  window(delayMs: number, ms: number): void {
    this.hist.reset();
    this.sentInWindow = 0;
    this.receivedInWindow = 0;
    this.windowStart = performance.now() + delayMs;
    this.windowEnd = this.windowStart + ms;
  }

  private inWindow(t: number): boolean {
    return t >= this.windowStart && t < this.windowEnd;
  }

  /** a frame sent at `now` (performance.now()) */
  sent(now: number): void {
    this.sentTotal++;
    if (this.inWindow(now)) this.sentInWindow++;
  }

  /** a frame back now, sent at `sentAt` (null: too short to carry its send time) */
  received(sentAt: number | null): void {
    const now = performance.now();
    this.receivedTotal++;
    if (this.inWindow(now)) this.receivedInWindow++;
    if (sentAt !== null && this.inWindow(sentAt)) this.hist.add(now - sentAt);
  }

  counts(unexpectedCloses: number): LoadCounts {
    const h = this.hist;
    return {
      sent: this.sentTotal,
      received: this.receivedTotal,
      sentInWindow: this.sentInWindow,
      receivedInWindow: this.receivedInWindow,
      rtt: { p50: h.quantile(0.5), p99: h.quantile(0.99), p999: h.quantile(0.999), max: h.max, mean: h.mean, samples: h.count },
      unexpectedCloses,
    };
  }
}
