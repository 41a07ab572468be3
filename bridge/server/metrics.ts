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
  /** datagrams the native media pump dropped: not from the leg's peer, not its RTP payload type */
  pumpRejectedDatagrams: 0,
  /** connections the native media pump handed back to JavaScript (a close, a bad frame, the end) */
  pumpHandbacks: 0,
};

/** Called before the media counters are read (the native media pump adds its counts). */
export const mediaStatsCollectors: Array<() => void> = [];

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
        for (const f of mediaStatsCollectors) f();
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
        for (const f of mediaStatsCollectors) f();
        dropped.set({ reason: 'slow_terminal' }, mediaStats.droppedSlowTerminal);
        dropped.set({ reason: 'rate_limit' }, mediaStats.droppedRateLimit);
        dropped.set({ reason: 'pump_rejected_datagram' }, mediaStats.pumpRejectedDatagrams);
      },
    });
    const handbacks = new Gauge({
      name: 'confmux_media_pump_handbacks_total',
      help: 'audio connections the native media pump handed back to the JavaScript path',
      registers,
      collect() {
        for (const f of mediaStatsCollectors) f();
        handbacks.set(mediaStats.pumpHandbacks);
      },
    });
  }
}
