/**
 * Counters. The media path bumps plain numbers in `mediaStats` (no label lookups per frame);
 * prom-client reads them when /metrics is scraped.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export const mediaStats = {
  framesFromTerminals: 0,
  framesToTerminals: 0,
  droppedSlowTerminal: 0,
  droppedRateLimit: 0,
  videoFromTerminals: 0,
  videoToTerminals: 0,
};

export class Metrics {
  readonly registry = new Registry();
  readonly connections: Counter<'kind'>;
  readonly refusals: Counter<'code'>;
  readonly calls: Counter<'reason'>;
  readonly terminals: Gauge;
  readonly activeCalls: Gauge;

  constructor(sources: { terminals: () => number; calls: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'confmux_' });
    this.connections = new Counter({ name: 'confmux_connections_bound_total', help: 'connections bound, by kind', labelNames: ['kind'], registers });
    this.refusals = new Counter({ name: 'confmux_refusals_total', help: 'connections closed or requests refused, by error code', labelNames: ['code'], registers });
    this.calls = new Counter({ name: 'confmux_calls_ended_total', help: 'calls ended, by reason', labelNames: ['reason'], registers });
    this.terminals = new Gauge({ name: 'confmux_terminals', help: 'terminals with a bound control connection', registers, collect() { this.set(sources.terminals()); } });
    this.activeCalls = new Gauge({ name: 'confmux_calls', help: 'calls in progress', registers, collect() { this.set(sources.calls()); } });
    const frames = new Gauge({
      name: 'confmux_media_frames_total',
      help: 'media frames relayed, by direction',
      labelNames: ['direction'],
      registers,
      collect() {
        frames.set({ direction: 'from_terminal' }, mediaStats.framesFromTerminals);
        frames.set({ direction: 'to_terminal' }, mediaStats.framesToTerminals);
        frames.set({ direction: 'video_from_terminal' }, mediaStats.videoFromTerminals);
        frames.set({ direction: 'video_to_terminal' }, mediaStats.videoToTerminals);
      },
    });
    const dropped = new Gauge({
      name: 'confmux_media_frames_dropped_total',
      help: 'media frames dropped, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        dropped.set({ reason: 'slow_terminal' }, mediaStats.droppedSlowTerminal);
        dropped.set({ reason: 'rate_limit' }, mediaStats.droppedRateLimit);
      },
    });
  }
}
